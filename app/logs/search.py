"""Search a huge log through its LogIndex: raw byte hits, rows that show a pattern, match counts.

Usage:
    hit = find_hit(index, "step 03000", 0)           # byte offset of the next hit, or None
    hit = find_hit(index, "loss", hit, backwards=True)
    counted = count_hits(index, "loss")             # every hit's offset (up to a cap) and the total
    row = find_row(index, "val_bpb", 0)              # first row at/after 0 that SHOWS the pattern

Smart case: case-insensitive unless the pattern has capitals. Everything streams the file in
SCAN_WINDOW reads, so memory stays constant whatever the file size (the offsets kept by
count_hits are capped at MAX_KEPT_HITS).
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field

from app.logs.index import SCAN_WINDOW, Cancelled, LogIndex

MAX_KEPT_HITS = 1_000_000  # hit offsets kept by count_hits (8 MB); beyond, hits are only counted


def _never() -> bool:
    return False


def needle_of(pattern: str) -> tuple[bytes, bool]:
    """(bytes to look for, whether to fold case): smart case."""
    fold = pattern == pattern.lower()
    return (pattern.lower() if fold else pattern).encode("utf-8"), fold


def _windows(index: LogIndex, needle: bytes, fold: bool, start: int, end: int,
             cancelled: Cancelled) -> Iterator[tuple[int, bytes, int]]:
    """(offset, window, limit): the file in SCAN_WINDOW reads that overlap by len(needle) - 1;
    a hit belongs to a window when it starts before `limit`, so none is seen twice."""
    overlap = len(needle) - 1
    pos = max(0, start)
    while pos < end and not cancelled():
        window = index.read(min(SCAN_WINDOW, end - pos + overlap), pos)
        if not window:
            return
        last = len(window) < SCAN_WINDOW
        limit = min(len(window), end - pos) if last else min(len(window) - overlap, end - pos)
        yield pos, window.lower() if fold else window, max(1, limit)
        if last:
            return
        pos += max(1, len(window) - overlap)


def _hits(index: LogIndex, pattern: str, start: int, end: int,
          cancelled: Cancelled = _never) -> Iterator[int]:
    """Offsets of every hit starting in [start, end), ascending."""
    needle, fold = needle_of(pattern)
    if not needle:
        return
    for pos, window, limit in _windows(index, needle, fold, start, end, cancelled):
        hit = window.find(needle)
        while 0 <= hit < limit:
            yield pos + hit
            hit = window.find(needle, hit + 1)


def find_hit(index: LogIndex, pattern: str, offset: int, backwards: bool = False,
             cancelled: Cancelled = _never) -> int | None:
    """The first hit starting at or after `offset` (backwards: the last one starting before it)."""
    if not backwards:
        return next(_hits(index, pattern, offset, index.size, cancelled), None)
    needle, fold = needle_of(pattern)
    if not needle:
        return None
    end = min(offset, index.size)
    while end > 0 and not cancelled():
        start = max(0, end - SCAN_WINDOW)
        window = index.read(end - start + len(needle) - 1, start)
        hit = (window.lower() if fold else window).rfind(needle, 0, end - start + len(needle) - 1)
        while hit >= 0 and start + hit >= end:
            hit = (window.lower() if fold else window).rfind(needle, 0, hit + len(needle) - 1)
        if hit >= 0:
            return start + hit
        end = start
    return None


@dataclass
class Counted:
    """Every hit of a pattern: offsets (the first MAX_KEPT_HITS) and the total."""

    pattern: str
    total: int = 0
    offsets: array = field(default_factory=lambda: array("q"))

    @property
    def complete(self) -> bool:
        return self.total == len(self.offsets)

    def ordinal(self, offset: int) -> int | None:
        """1-based position of the hit at `offset` among all hits, when known."""
        at = bisect_left(self.offsets, offset)
        if at < len(self.offsets) and self.offsets[at] == offset:
            return at + 1
        return None

    def next_after(self, offset: int, backwards: bool) -> int | None:
        """The kept hit after (before) `offset`, wrapping around; None when there is none."""
        if not self.offsets or not self.complete:
            return None
        if backwards:
            at = bisect_left(self.offsets, offset) - 1
            return self.offsets[at]  # -1 wraps to the last
        at = bisect_right(self.offsets, offset)
        return self.offsets[at % len(self.offsets)]


def count_hits(index: LogIndex, pattern: str, cancelled: Cancelled = _never) -> Counted | None:
    """Every hit in the file; None when cancelled."""
    counted = Counted(pattern)
    needle, fold = needle_of(pattern)
    if not needle:
        return counted
    for pos, window, limit in _windows(index, needle, fold, 0, index.size, cancelled):
        if len(counted.offsets) >= MAX_KEPT_HITS:  # beyond the cap: counted at C speed
            counted.total += window.count(needle, 0, limit + len(needle) - 1)
            continue
        hit = window.find(needle)
        while 0 <= hit < limit:
            if len(counted.offsets) < MAX_KEPT_HITS:
                counted.offsets.append(pos + hit)
            counted.total += 1
            hit = window.find(needle, hit + 1)
    return None if cancelled() else counted


def find_row(index: LogIndex, pattern: str, start_row: int, backwards: bool = False,
             cancelled: Cancelled = _never) -> int | None:
    """The first row at or after (before, backwards) `start_row` that shows `pattern`: a hit in a
    `\\r` segment that the terminal overwrote does not count (unless the index is in segment mode)."""
    fold = pattern == pattern.lower()
    count = index.line_count
    if not pattern or count == 0:
        return None
    start_row = min(max(start_row, 0), count - 1)
    start, end = index.row_range(start_row)
    offset = start if not backwards else end + 1
    while not cancelled():
        hit = find_hit(index, pattern, offset, backwards, cancelled)
        if hit is None or hit >= index.scanned:
            return None
        row = index.row_of_offset(hit)
        if row is None:
            return None
        text = index.line(row)
        if pattern in (text.lower() if fold else text):
            return row
        row_start, row_end = index.row_range(row)
        offset = row_start if backwards else row_end + 1
        if backwards and offset == 0:
            return None
    return None
