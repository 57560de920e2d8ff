"""LogTail: complete lines by offset, `\\r` progress collapsed into one live line, bounded memory."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.logs.tail import LogTail
from realdata import REAL_RUNS, parse_file


def _append(path: Path, data: bytes | str) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def _step(n: int, pct: float) -> str:
    return (f"\rstep {n:05d} ({pct:.1f}%) | loss: {4 - n / 100:.6f} | lrm: 1.00 | dt: 312ms | "
            f"tok/sec: 52,480 | mfu: 0.0% | epoch: 1 | remaining: {300 - n}s    ")


def test_complete_lines_only_and_offsets_advance(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    tail = LogTail(log)
    assert tail.read().lines == []  # no file yet: nothing, no error
    _append(log, "loading data\nbuilding mod")
    chunk = tail.read()
    assert chunk.lines == ["loading data"]
    assert chunk.live == "building mod"  # the unfinished line is live, not a log line
    _append(log, "el\n\nready\n")
    chunk = tail.read()
    assert chunk.lines == ["building model", "", "ready"]
    assert chunk.live == ""
    assert tail.offset == log.stat().st_size
    assert tail.read().lines == []


def test_step_segments_collapse_into_one_live_line(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    _append(log, "start\n")
    tail = LogTail(log)
    assert tail.read().lines == ["start"]
    for n in range(1, 200):
        _append(log, _step(n, n / 3))
        chunk = tail.read()
        assert chunk.lines == []
        assert chunk.live == _step(n, n / 3).strip()  # one line, the latest step, no padding
    _append(log, "\n---\nval_bpb:          0.997900\n")
    chunk = tail.read()
    assert chunk.lines == [_step(199, 199 / 3).strip(), "---", "val_bpb:          0.997900"]
    assert chunk.live == ""


def test_split_utf8_and_crlf_across_reads(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    tail = LogTail(log)
    data = "héllo → wörld\r\nnext\n".encode()
    lines: list[str] = []
    for i in range(len(data)):  # one byte at a time: splits the UTF-8 characters and the CRLF
        _append(log, data[i:i + 1])
        lines.extend(tail.read().lines)
    assert lines == ["héllo → wörld", "next"]


def test_untrusted_text_is_sanitized_but_markup_kept(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    _append(log, "\x1b[31mred\x1b[0m [bold]x[/bold] \x1b]8;;http://evil\x07link\x1b]8;;\x07\x07\n")
    assert LogTail(log).read().lines == ["red [bold]x[/bold] link"]


def test_truncate_and_replace_reset_the_view(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    _append(log, "one\ntwo\n")
    tail = LogTail(log)
    assert tail.read().lines == ["one", "two"]
    log.write_text("new\n")  # truncated in place and rewritten shorter
    chunk = tail.read()
    assert chunk.reset and chunk.lines == ["new"]
    replacement = tmp_path / "other.log"
    replacement.write_text("replaced\n")
    os.replace(replacement, log)
    chunk = tail.read()
    assert chunk.reset and chunk.lines == ["replaced"]


def test_backlog_start_mid_line_drops_only_the_partial_segment(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    _append(log, "header\n" + "".join(_step(n, n / 10) for n in range(1, 3000)))
    tail = LogTail(log, backlog_bytes=4096)
    chunk = tail.read()
    assert chunk.lines == []  # the header is before the backlog window; no partial garbage
    assert chunk.live == _step(2999, 299.9).strip()
    _append(log, "\ndone\n")
    assert tail.read().lines == [_step(2999, 299.9).strip(), "done"]


def test_backlog_start_mid_text_line_skips_that_line(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    _append(log, "".join(f"line {i:06d}\n" for i in range(10_000)))
    chunk = LogTail(log, backlog_bytes=1000).read()
    assert chunk.lines[-1] == "line 009999"
    assert all(line.startswith("line ") and len(line) == 11 for line in chunk.lines)


def test_memory_stays_bounded(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    _append(log, "x" * 3_000_000)  # 3 MB without a separator
    tail = LogTail(log, backlog_bytes=None, max_line_chars=1000, max_lines=100)
    chunk = tail.read()
    assert chunk.live == "x" * 1000
    _append(log, "\n" + "".join(f"{i}\n" for i in range(5000)))
    chunk = tail.read()
    assert chunk.lines == [str(i) for i in range(4900, 5000)]
    assert chunk.dropped == 4901  # the long line and the first 4900 numbers were only counted


def test_large_appends_are_read_in_bounded_chunks(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    payload = "".join(f"{i:07d}\n" for i in range(1_000_000))  # 8 MB
    _append(log, payload)
    tail = LogTail(log, backlog_bytes=None, max_lines=2_000_000)
    first = tail.read()
    assert 0 < tail.offset < len(payload)  # not everything at once
    rest: list[str] = []
    while chunk := tail.read().lines:
        rest.extend(chunk)
    assert first.lines + rest == [f"{i:07d}" for i in range(1_000_000)]


@pytest.mark.parametrize("name", ["moe-run-compute90.log", "moe-run-f3.log", "moe-run-smoke.log"])
def test_real_logs_match_the_parser(name: str) -> None:
    path = REAL_RUNS / name
    parsed = parse_file(path)
    lines: list[str] = []
    with LogTail(path, backlog_bytes=None) as tail:
        while True:
            chunk = tail.read()
            if not chunk.lines and tail.offset == path.stat().st_size:
                break
            lines.extend(chunk.lines)
    assert not any("\r" in line for line in lines)
    assert len(lines) == path.read_bytes().count(b"\n")
    visible = [line for line in lines if line.strip()] + ([chunk.live] if chunk.live else [])
    assert visible[-len(parsed.tail):] == [t.rstrip() for t in parsed.tail]
    if parsed.summary is None:  # stopped mid-run: the last step is the live line
        assert chunk.live.startswith(f"step {parsed.last_step.step:05d}")
