"""LogIndex: logical lines (\\r collapsed) by random access, on small blocks to hit every boundary."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from app.logs.index import MAX_LINE_CHARS, LogIndex
from app.logs.search import find_row
from realdata import REAL_RUNS


def shown_lines(data: bytes) -> list[str]:
    """Oracle: split everything in memory, keep each line's last non-blank `\\r` segment."""
    parts = data.split(b"\n")
    if parts[-1] == b"":
        parts.pop()
    lines = []
    for part in parts:
        segments = part.rstrip(b"\r").split(b"\r")
        shown = next((s for s in reversed(segments) if s.strip()), segments[-1])
        lines.append(shown.decode("utf-8", "replace").expandtabs())
    return lines


def index_all(index: LogIndex) -> LogIndex:
    """Index to the end of the file, the way the log viewer's worker does."""
    while not index.index_more():
        pass
    return index


def built(path: Path, block_size: int = 16) -> LogIndex:
    return index_all(LogIndex(path, block_size=block_size))


def test_random_logs_match_the_oracle_at_every_block_size(tmp_path: Path) -> None:
    rng = random.Random(7)
    pieces = [b"\n", b"\r", b"\r\n", b"step 00001 (1.0%) | loss: 4.2", b"abc", b"   ", b"\xff\xfe", b"x" * 40]
    for trial in range(30):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randrange(0, 120)))
        path = tmp_path / f"log{trial}.log"
        path.write_bytes(data)
        expected = shown_lines(data) if data else []
        for block_size in (1, 3, 16, 64 * 1024):
            index = built(path, block_size)
            assert index.line_count == len(expected), (data, block_size)
            assert index.lines(0, 10_000) == expected, (data, block_size)
            assert index.tail(5) == expected[-5:]


def test_carriage_returns_collapse_to_what_a_terminal_shows(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"start\r\n\rstep 1 | loss: 5.0   \rstep 2 | loss: 4.0   \r\nafter\rover\r\r\n---\n")
    index = built(path, block_size=4)
    assert index.lines(0, 10) == ["start", "step 2 | loss: 4.0   ", "over", "---"]


def test_blank_last_segment_falls_back_to_the_step_before(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"\rstep 1\rstep 2\r      \n")
    assert built(path).line(0) == "step 2"


def test_non_utf8_bytes_become_replacement_characters(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"caf\xe9 \xff ok\n\x1b[31mred\x1b[0m [red]x[/red]\n")
    index = built(path)
    assert index.line(0) == "caf\ufffd \ufffd ok"
    assert index.line(1) == "red [red]x[/red]"


def test_lines_are_available_before_the_index_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"".join(b"line %05d\n" % i for i in range(5000)))
    index = LogIndex(path, block_size=64)
    assert index.line_count == 0 and not index.complete
    index.index_more(1024)
    assert not index.complete
    assert index.lines(0, 3) == ["line 00000", "line 00001", "line 00002"]
    assert index.tail(2) == ["line 04998", "line 04999"]
    assert index_all(index).complete
    assert index.line_count == 5000
    assert index.line(4321) == "line 04321"


def test_a_growing_file_shows_new_lines_after_refresh(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"boot\n\rstep 00001 (1.0%)")
    index = built(path, block_size=8)
    assert index.lines(0, 5) == ["boot", "step 00001 (1.0%)"]
    assert not index.refresh()
    with path.open("ab") as log:
        log.write(b"\rstep 00002 (2.0%)\rstep 00003 (3.0%)")
    assert index.refresh() and not index.complete
    index_all(index)
    assert index.line_count == 2 and index.line(1) == "step 00003 (3.0%)"
    with path.open("ab") as log:
        log.write(b"\n---\nval_bpb: 0.99\n")
    index.refresh()
    index_all(index)
    assert index.lines(0, 9) == ["boot", "step 00003 (3.0%)", "---", "val_bpb: 0.99"]


def test_a_truncated_file_is_indexed_again(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"old line one\nold line two\n")
    index = built(path, block_size=4)
    path.write_bytes(b"new\n")
    assert index.refresh()
    index_all(index)
    assert index.lines(0, 5) == ["new"]


def test_a_huge_line_is_capped_and_its_last_segment_found(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"a" * 3_000_000 + b"\rshort segment\n" + b"b" * 2_000_000 + b"\nend\n")
    index = built(path, block_size=4096)
    assert index.line(0) == "short segment"
    assert index.line(1).startswith("b" * MAX_LINE_CHARS)
    assert "[line cut: 2,000,000 bytes]" in index.line(1)
    assert index.line(2) == "end"


def test_find_skips_overwritten_segments_and_searches_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    body = b"\rstep 00001 loss 9\rstep 00002 loss 8\n" + b"filler\n" * 3000 + b"Loss summary\nlast loss\n"
    path.write_bytes(body)
    index = built(path, block_size=32)
    assert find_row(index, "step 00001", 0) is None
    assert find_row(index, "step 00002", 0) == 0
    assert find_row(index, "loss", 1) == 3001
    assert find_row(index, "Loss", 0) == 3001
    assert find_row(index, "loss", 3001, backwards=True) == 3001
    assert find_row(index, "loss", 3000, backwards=True) == 0
    assert find_row(index, "loss", 3002, backwards=True) == 3002
    assert find_row(index, "loss", 0, cancelled=lambda: True) is None
    assert find_row(index, "absent", 0) is None


def test_find_across_scan_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.logs.search.SCAN_WINDOW", 64)
    path = tmp_path / "run.log"
    lines = [f"row {i:04d} {'needle' if i in (40, 77) else 'hay'}" for i in range(100)]
    path.write_text("\n".join(lines) + "\n")
    index = built(path, block_size=16)
    assert find_row(index, "needle", 0) == 40
    assert find_row(index, "needle", 41) == 77
    assert find_row(index, "needle", 99, backwards=True) == 77
    assert find_row(index, "needle", 76, backwards=True) == 40


def test_real_logs_collapse_and_end_with_their_summary() -> None:
    index = built(REAL_RUNS / "moe-run-compute90.log", block_size=64 * 1024)
    step_line = index.line(39)
    assert step_line.startswith("step 06999 (100.0%) | loss: 2.429389")
    assert index.tail(1) == ["router_aux_loss:  0.002516"]
    assert find_row(index, "val_bpb", 0) == 43 and index.line(43) == "val_bpb:          0.936404"
    crashed = built(REAL_RUNS / "moe-run-f3.log", block_size=4096)
    assert crashed.tail(1)[0].startswith("step 02624 (9.8%)")
    assert "---" not in crashed.lines(0, crashed.line_count)


def test_reads_after_close_fail_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "run.log"
    path.write_bytes(b"one\ntwo\n")
    index = built(path)
    index.close()
    with pytest.raises(OSError):
        index.line(0)
    with pytest.raises(OSError):
        index.refresh()
    index.close()  # twice is fine
