"""Follow a growing training log: new complete lines plus ONE live progress line.

Usage:
    tail = LogTail(Path(".autoresearch/logs/12.log"))
    chunk = tail.read()      # call again whenever you like (e.g. every 25 ms)
    chunk.lines              # lines completed since the last read, sanitized, oldest first
    chunk.live               # the unfinished line: its latest `\\r` segment (the step line), or ""

train.py rewrites its progress with `\\r` on one physical line for the whole run, so a naive tail
shows one ever-growing line. Here every physical line collapses to its last non-blank `\\r`
segment, and the unfinished line is reported separately as `live`. Memory stays bounded: a read
takes at most READ_CHUNK_BYTES, keeps at most `max_lines` completed lines (older ones are counted
in `dropped`), and a line longer than `max_line_chars` is cut. No UI import: the TUI and the CLI
can both use it.
"""
from __future__ import annotations

import codecs
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.logs.textsafe import sanitize

READ_CHUNK_BYTES = 4 << 20  # most bytes one read() consumes; the rest waits for the next call
BACKLOG_BYTES = 64 << 10  # when following a log already in progress, start this far from its end
MAX_LINE_CHARS = 4096  # longer segments are cut to this many characters
MAX_LINES = 5000  # completed lines kept per read(); older ones in a burst are only counted


@dataclass
class TailChunk:
    """What one read() found."""

    lines: list[str]  # newly completed lines, sanitized, oldest first
    live: str  # the unfinished line's latest segment, sanitized ("" when there is none)
    dropped: int = 0  # completed lines skipped because more than max_lines arrived at once
    reset: bool = False  # the file was truncated or replaced: the consumer should clear its view


class LogTail:
    """Incremental reader of one log file, by byte offset; safe to call before the file exists."""

    def __init__(self, path: Path | str, *, backlog_bytes: int | None = BACKLOG_BYTES,
                 max_line_chars: int = MAX_LINE_CHARS, max_lines: int = MAX_LINES) -> None:
        """`backlog_bytes`: start that far before the current end (None: from the beginning)."""
        self.path = Path(path)
        self.max_line_chars = max_line_chars
        self.max_lines = max_lines
        self._backlog = backlog_bytes
        self._file: BinaryIO | None = None
        self._inode: tuple[int, int] | None = None
        self.offset = 0  # bytes consumed so far
        self._restart()

    def _restart(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._segment = ""  # the open segment (text after the last separator), capped
        self._line_last = ""  # the last non-blank finished segment of the open physical line
        self._skip_partial = False  # drop text up to the first separator (we started mid-line)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> LogTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ----------------------------------------------------------------------------

    def read(self) -> TailChunk:
        """Consume what was appended since the last call (at most READ_CHUNK_BYTES)."""
        reset = self._ensure_open()
        if self._file is None:
            return TailChunk([], "", reset=reset)
        size = os.fstat(self._file.fileno()).st_size
        if size < self.offset:  # truncated in place
            self.offset = 0
            self._restart()
            reset = True
        self._file.seek(self.offset)
        data = self._file.read(READ_CHUNK_BYTES)
        self.offset += len(data)
        lines: deque[str] = deque(maxlen=self.max_lines)
        completed = self._consume(self._decoder.decode(data), lines)
        return TailChunk(list(lines), self._live(), dropped=completed - len(lines), reset=reset)

    def _ensure_open(self) -> bool:
        """Open (or reopen a replaced) file; True when the consumer must start over."""
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        inode = (stat.st_dev, stat.st_ino)
        if self._file is not None and inode == self._inode:
            return False
        replaced = self._file is not None
        self.close()
        try:
            self._file = open(self.path, "rb")  # noqa: SIM115 -- held open across polls, closed by close()
        except OSError:
            return False
        self._inode = inode
        self._restart()
        self.offset = 0
        if not replaced and self._backlog is not None and stat.st_size > self._backlog:
            self.offset = stat.st_size - self._backlog
            self._skip_partial = True
        return replaced

    # -- splitting --------------------------------------------------------------------------

    def _consume(self, text: str, out: deque[str]) -> int:
        """Split decoded text into finished lines (appended to `out`); returns how many."""
        completed = 0
        pieces = text.split("\n")
        for index, piece in enumerate(pieces):
            segments = piece.split("\r")
            for position, segment in enumerate(segments):
                self._append(segment)
                if position < len(segments) - 1:
                    self._close_segment()
            if index < len(pieces) - 1:
                partial_line = self._skip_partial
                self._close_segment()
                if not partial_line:
                    out.append(sanitize(self._line_last.rstrip()))
                    completed += 1
                self._line_last = ""
        return completed

    def _append(self, text: str) -> None:
        room = self.max_line_chars - len(self._segment)
        if room > 0 and text:
            self._segment += text[:room]

    def _close_segment(self) -> None:
        """End the open segment at a separator; the first one after a mid-file start is dropped."""
        if self._skip_partial:
            self._skip_partial = False
        elif self._segment.strip():
            self._line_last = self._segment
        self._segment = ""

    def _live(self) -> str:
        if self._skip_partial:
            return ""
        open_text = self._segment if self._segment.strip() else self._line_last
        return sanitize(open_text.rstrip())
