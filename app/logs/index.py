"""Random access to huge training logs without reading them whole.

Usage:
    index = LogIndex(Path("run.log"))
    index.index_more()                 # index the next few MB (call from a worker until complete)
    index.lines(0, 40)                 # the first screen, available at once
    index.tail(40)                     # the last screen, available before the index is complete
    find_row(index, "val_bpb", 0)      # first logical line showing it (app/logs/search.py)
    index.refresh()                    # pick up lines appended to a growing log

A logical line is a `\\n`-terminated line whose `\\r` segments are collapsed to the last non-blank
one, which is what a terminal shows after a `\\r` progress line. `LogIndex(path, segments=True)`
indexes every `\\r` segment as a row of its own instead (a lone `\\r` or a `\\n` ends a row; `\\r\\n`
is one line end), so each progress step can be shown and found; the viewer builds it only on demand.
The index keeps one number per 64 KiB block (how many newlines precede it), so a 1 GB log costs
~128 KiB of index whatever its line count; a block's newline positions are found again on demand and cached.
"""
from __future__ import annotations

import os
import re
import threading
from array import array
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from app.logs.textsafe import sanitize

# ---------------------------------------------------------------------------
# Limits

BLOCK_SIZE = 64 * 1024  # bytes per index entry
READ_SIZE = 4 * 1024 * 1024  # bytes read per index_more() call by default
SCAN_WINDOW = 1024 * 1024  # bytes per read when scanning backwards or searching
MAX_LINE_BYTES = 16 * 1024  # bytes of a segment read for display
MAX_LINE_CHARS = 4000  # characters of a line shown; the rest is replaced by a marker
CRASH_TAIL_LINES = 50  # lines of a crashed run's log that are highlighted
TAIL_SCAN_BYTES = 256 * 1024 * 1024  # how far tail() looks back for line starts
BLOCK_CACHE = 16  # blocks whose newline positions are kept
BLANK_SKIPS = 8  # blank trailing segments skipped back over before giving up

Cancelled = Callable[[], bool]
_SEPARATOR = re.compile(rb"\r(?!\n)|\n")  # a segment row ends at a lone \r or at \n


def _never() -> bool:
    return False


def _separators_in(buf: bytes, start: int, end: int) -> int:
    """Row ends in buf[start:end] in segment mode; buf may hold one byte past `end` (lookahead)."""
    found = buf.count(b"\n", start, end) + buf.count(b"\r", start, end) - buf.count(b"\r\n", start, end)
    if end > start and buf[end - 1:end + 1] == b"\r\n":
        found -= 1  # the \r of a \r\n split by the block end
    return found


def _newlines_in(buf: bytes | bytearray, start: int, end: int) -> int:
    """Newlines in buf[start:end]: memchr-speed finds while sparse, count() once dense."""
    found = 0
    pos = buf.find(b"\n", start, end)
    while pos >= 0:
        found += 1
        if found == 16:
            return found + buf.count(b"\n", pos + 1, end)
        pos = buf.find(b"\n", pos + 1, end)
    return found


class LogIndex:
    """A growing index of logical line starts in one log file; safe to share between threads."""

    def __init__(self, path: Path | str, *, block_size: int = BLOCK_SIZE, segments: bool = False) -> None:
        self.path = Path(path)
        self.block_size = block_size
        self.segments = segments
        self._fd = os.open(self.path, os.O_RDONLY)
        self._lock = threading.RLock()
        self._size = os.fstat(self._fd).st_size
        self._generation = 0
        self._reset()

    def _reset(self) -> None:
        self._newlines_before = array("q", [0])  # [b]: newlines in blocks before block b
        self._scanned = 0  # bytes indexed; blocks are full except perhaps the last
        self._last_newline = -1  # offset of the last indexed newline
        self._generation += 1  # a reset makes index_more() drop what it read before
        self._blocks: OrderedDict[int, array] = OrderedDict()
        self._tail_cache: tuple[int, int, list[tuple[int, int]]] | None = None

    def close(self) -> None:
        """Release the file; safe while another thread is reading (it gets an OSError)."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _read(self, length: int, offset: int) -> bytes:
        """pread under the lock, so close() never frees a descriptor that is being read."""
        with self._lock:
            if self._fd < 0:
                raise OSError(f"{self.path}: the log index is closed")
            return os.pread(self._fd, length, offset)

    # --- state ---------------------------------------------------------------------------------

    @property
    def size(self) -> int:
        """File size in bytes as of the last refresh."""
        return self._size

    @property
    def scanned(self) -> int:
        """Bytes indexed so far."""
        return self._scanned

    @property
    def complete(self) -> bool:
        """Whether every byte known so far is indexed."""
        return self._scanned >= self._size

    @property
    def progress(self) -> float:
        """Fraction of the file indexed, 0..1."""
        return 1.0 if not self._size else min(1.0, self._scanned / self._size)

    @property
    def line_count(self) -> int:
        """Logical lines indexed so far (an unterminated last one included); never shrinks
        unless the file does."""
        with self._lock:
            partial = self._scanned > self._last_newline + 1
            return self._newlines_before[-1] + partial

    def refresh(self) -> bool:
        """Re-read the file size; True when it changed. A shrunk file is indexed again from scratch."""
        with self._lock:
            if self._fd < 0:
                raise OSError(f"{self.path}: the log index is closed")
            size = os.fstat(self._fd).st_size
            if size == self._size:
                return False
            if size < self._scanned:
                self._reset()
            self._size = size
            self._tail_cache = None
            return True

    # --- indexing ------------------------------------------------------------------------------

    def index_more(self, max_bytes: int = READ_SIZE) -> bool:
        """Index up to `max_bytes` more of the file; True once the index is complete."""
        with self._lock:
            generation, scanned, size, bs = self._generation, self._scanned, self._size, self.block_size
        start = scanned - scanned % bs  # a partial last block is read again, whole
        end = min(size, start + max(bs, max_bytes - max_bytes % bs))
        if end <= scanned:
            return self.complete
        data = self._read(end - start + self.segments, start)  # + a lookahead byte for \r\n
        length = min(len(data), end - start)
        counts = array("q")
        running = 0
        for offset in range(0, length, bs):
            stop = min(offset + bs, length)
            running += (_separators_in(data, offset, stop) if self.segments
                        else _newlines_in(data, offset, stop))
            counts.append(running)
        last_newline = self._last_separator(data, length)
        data = data[:length]
        with self._lock:
            if generation != self._generation or scanned != self._scanned:
                return self.complete  # reset or extended by someone else meanwhile
            if start != scanned:
                self._newlines_before.pop()
                self._blocks.pop(start // bs, None)
            base = self._newlines_before[-1]
            self._newlines_before.extend(base + count for count in counts)
            self._scanned = start + len(data)
            if last_newline >= 0:
                self._last_newline = start + last_newline
            self._tail_cache = None
            return self.complete

    def _last_separator(self, data: bytes, length: int) -> int:
        newline = data.rfind(b"\n", 0, length)
        if not self.segments:
            return newline
        carriage = data.rfind(b"\r", 0, length)
        while carriage >= 0 and data[carriage + 1:carriage + 2] == b"\n":
            carriage = data.rfind(b"\r", 0, carriage)
        return max(newline, carriage)

    # --- newline positions ---------------------------------------------------------------------

    def _block_newlines(self, block: int) -> array:
        """Offsets (within the block) of every newline in an indexed block, cached."""
        cached = self._blocks.get(block)
        if cached is not None:
            self._blocks.move_to_end(block)
            return cached
        start = block * self.block_size
        length = min(self.block_size, self._scanned - start)
        data = self._read(length + self.segments, start)
        positions = array("i")
        if self.segments:
            positions.extend(m.start() for m in _SEPARATOR.finditer(data, 0, length + 1)
                             if m.start() < length)
            return self._cache_block(block, positions)
        pos = data.find(b"\n")
        while pos >= 0:
            positions.append(pos)
            pos = data.find(b"\n", pos + 1)
        return self._cache_block(block, positions)

    def _cache_block(self, block: int, positions: array) -> array:
        self._blocks[block] = positions
        if len(self._blocks) > BLOCK_CACHE:
            self._blocks.popitem(last=False)
        return positions

    def _newline_pos(self, k: int) -> int:
        """Byte offset of the k-th newline (1-based) in the indexed part."""
        block = bisect_left(self._newlines_before, k) - 1
        positions = self._block_newlines(block)
        return block * self.block_size + positions[k - self._newlines_before[block] - 1]

    def _line_of_offset(self, offset: int) -> int:
        """The logical line holding byte `offset` (which must be indexed)."""
        block = offset // self.block_size
        positions = self._block_newlines(block)
        return self._newlines_before[block] + bisect_left(positions, offset - block * self.block_size)

    def _line_range(self, i: int) -> tuple[int, int]:
        """Byte range of logical line i, without its newline."""
        total = self._newlines_before[-1]
        start = 0 if i == 0 else self._newline_pos(i) + 1
        end = self._newline_pos(i + 1) if i + 1 <= total else self._scanned
        return start, end

    # --- reading lines -------------------------------------------------------------------------

    def _rfind(self, byte: bytes, lo: int, hi: int) -> int:
        """Offset of the last `byte` in [lo, hi) of the file, or -1; reads growing windows backwards."""
        window = 4096
        while hi > lo:
            start = max(lo, hi - window)
            found = self._read(hi - start, start).rfind(byte)
            if found >= 0:
                return start + found
            hi = start
            window = min(SCAN_WINDOW, window * 4)
        return -1

    def _shown_segment(self, start: int, end: int) -> tuple[int, int]:
        """The byte range of the segment a terminal would show for the line in [start, end):
        the last non-blank one, or the last one when all are blank."""
        while end > start and self._read(1, end - 1) == b"\r":
            end -= 1
        last: tuple[int, int] | None = None
        for _ in range(BLANK_SKIPS):
            carriage = self._rfind(b"\r", start, end)
            segment = (carriage + 1 if carriage >= 0 else start, end)
            last = last or segment
            length = segment[1] - segment[0]
            if length > MAX_LINE_BYTES or self._read(length, segment[0]).strip():
                return segment
            if carriage < 0:
                break
            end = carriage
        return last or (start, end)

    def _render(self, start: int, end: int) -> str:
        seg_start, seg_end = (start, end) if self.segments else self._shown_segment(start, end)
        length = seg_end - seg_start
        raw = self._read(min(length, MAX_LINE_BYTES), seg_start)
        text = sanitize(raw.decode("utf-8", "replace")).expandtabs()
        if length > MAX_LINE_BYTES or len(text) > MAX_LINE_CHARS:
            text = f"{text[:MAX_LINE_CHARS]} … [line cut: {length:,} bytes]"
        return text

    def line(self, i: int) -> str:
        """Logical line i as shown (sanitized, capped); IndexError beyond the indexed lines."""
        with self._lock:
            if not 0 <= i < self.line_count:
                raise IndexError(f"line {i} is not indexed (have {self.line_count})")
            return self._render(*self._line_range(i))

    def lines(self, start: int, n: int) -> list[str]:
        """Up to n logical lines from `start` (fewer at the end of the indexed part)."""
        with self._lock:
            stop = min(self.line_count, start + n)
            return [self._render(*self._line_range(i)) for i in range(max(0, start), stop)]

    # --- the end of the file -------------------------------------------------------------------

    def _tail_ranges(self, n: int) -> list[tuple[int, int]]:
        """Byte ranges of the last n logical lines, found by scanning back from the end."""
        size = self._size
        if self._tail_cache and self._tail_cache[:2] == (size, n):
            return self._tail_cache[2]
        if self.complete:
            count = self.line_count
            ranges = [self._line_range(i) for i in range(max(0, count - n), count)]
        else:
            ranges = []
            end = size
            if end and self._read(1, end - 1) == b"\n":
                end -= 1
            floor = max(0, size - TAIL_SCAN_BYTES)
            while len(ranges) < n and end > floor:
                newline = self._rfind(b"\n", floor, end)
                if self.segments:
                    newline = max(newline, self._rfind(b"\r", max(floor, newline), end))
                ranges.append((newline + 1 if newline >= 0 else floor, end))
                end = newline
            ranges.reverse()
        self._tail_cache = (size, n, ranges)
        return ranges

    def tail(self, n: int) -> list[str]:
        """The last n logical lines of the whole file, even before the index is complete."""
        with self._lock:
            return [self._render(start, end) for start, end in self._tail_ranges(n)]

    # --- positions, for app/logs/search.py and the viewer ----------------------------------------

    def read(self, length: int, offset: int) -> bytes:
        """Raw bytes of the file (what search scans)."""
        return self._read(length, offset)

    def row_of_offset(self, offset: int) -> int | None:
        """The row holding byte `offset`, or None while that byte is not indexed yet."""
        with self._lock:
            if not 0 <= offset < self._scanned:
                return None
            return self._line_of_offset(offset)

    def row_range(self, row: int) -> tuple[int, int]:
        """Byte range of row `row`, without its line end."""
        with self._lock:
            return self._line_range(row)

    def shown_range(self, row: int) -> tuple[int, int]:
        """Byte range of what row `row` shows (its last non-blank segment unless in segment mode)."""
        with self._lock:
            start, end = self._line_range(row)
            return (start, end) if self.segments else self._shown_segment(start, end)

    def index_through(self, offset: int, cancelled: Cancelled = _never) -> bool:
        """Index at least up to byte `offset`; False when cancelled first."""
        while self._scanned <= offset and not self.complete:
            if cancelled():
                return False
            self.index_more()
        return True
