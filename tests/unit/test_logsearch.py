"""Segment mode of LogIndex (every `\\r` step a row) and app/logs/search.py, against in-memory oracles."""
from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from app.logs.index import LogIndex
from app.logs.search import count_hits, find_hit, find_row
from realdata import REAL_RUNS


def segment_rows(data: bytes) -> list[str]:
    """Oracle: rows end at a lone \\r or at \\n (\\r\\n is one line end)."""
    parts = re.split(rb"\r(?!\n)|\n", data)
    if parts[-1] == b"":
        parts.pop()
    return [p.decode("utf-8", "replace").replace("\r", "").expandtabs() for p in parts]


def built(path: Path, block_size: int) -> LogIndex:
    index = LogIndex(path, block_size=block_size, segments=True)
    while not index.index_more(block_size * 3):
        pass
    return index


def test_segment_rows_match_the_oracle_at_every_block_size(tmp_path: Path) -> None:
    rng = random.Random(7)
    pieces = [b"\r", b"\n", b"\r\n", b"step 1 loss 2", b"x", b"  ", b"\r\r"]
    path = tmp_path / "run.log"
    for trial in range(30):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 120)))
        path.write_bytes(data)
        for block_size in (1, 2, 3, 7, 16):
            index = built(path, block_size)
            expected = segment_rows(data)
            assert index.line_count == len(expected), (trial, block_size, data)
            assert index.lines(0, len(expected) + 5) == expected, (trial, block_size, data)


def test_every_progress_step_of_a_real_log_is_a_row() -> None:
    path = REAL_RUNS / "moe-run-compute90.log"
    index = built(path, 64 * 1024)
    row = find_row(index, "step 03000", 0)
    assert row is not None and index.line(row).startswith("step 03000 (")
    assert index.line(row + 1).startswith("step 03001 (")
    assert index.tail(1) == ["router_aux_loss:  0.002516"]
    assert index.line_count > 7000


def test_hits_both_ways_across_windows_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.logs.search.SCAN_WINDOW", 32)
    data = b"".join(b"row %04d %s\r" % (i, b"Needle" if i % 13 == 0 else b"hay") for i in range(200))
    path = tmp_path / "run.log"
    path.write_bytes(data)
    index = built(path, 16)
    expected = [m.start() for m in re.finditer(rb"needle", data.lower())]
    assert find_hit(index, "needle", 0) == expected[0]
    assert find_hit(index, "needle", expected[0] + 1) == expected[1]
    assert find_hit(index, "needle", expected[3], backwards=True) == expected[2]
    assert find_hit(index, "needle", len(data), backwards=True) == expected[-1]
    assert find_hit(index, "needle", expected[0], backwards=True) is None
    assert find_hit(index, "NEEDLE", 0) is None  # capitals: case-sensitive
    counted = count_hits(index, "needle")
    assert counted is not None and list(counted.offsets) == expected and counted.total == len(expected)
    assert counted.ordinal(expected[4]) == 5
    assert counted.next_after(expected[-1], backwards=False) == expected[0]  # wraps
    assert counted.next_after(expected[0], backwards=True) == expected[-1]
    assert count_hits(index, "needle", cancelled=lambda: True) is None


def test_hits_past_the_kept_cap_are_still_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("app.logs.search.SCAN_WINDOW", 64)
    monkeypatch.setattr("app.logs.search.MAX_KEPT_HITS", 5)
    path = tmp_path / "run.log"
    path.write_bytes(b"loss 1\r" * 500)
    index = built(path, 16)
    counted = count_hits(index, "loss")
    assert counted is not None and counted.total == 500 and len(counted.offsets) == 5
    assert not counted.complete and counted.ordinal(counted.offsets[2]) == 3
