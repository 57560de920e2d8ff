"""The crash tail of a log: its last traceback, however long, through the exception line.

parse.StreamParser feeds every logical line (each `\\r`-rewritten line as its last segment) to the
traceback it is in; a new `Traceback (most recent call last):` starts over, also when glued to a step line.
"""
from __future__ import annotations

from collections import deque

TAIL_LINES = 50  # logical lines in the crash tail
AFTER_EXCEPTION_LINES = 8  # lines after the exception line kept (its message may go on)
TRACEBACK = "Traceback (most recent call last):"


class Traceback:
    """The last traceback of a log, however long: its header, last frames, exception line and what follows."""

    def __init__(self, header: str) -> None:
        self.header = header
        self.frames: deque[str] = deque(maxlen=TAIL_LINES)
        self.skipped = 0  # frame lines that fell out of `frames`
        self.exception: str | None = None
        self.after: list[str] = []

    def add(self, line: str) -> None:
        if self.exception is None and line[:1] in (" ", "\t"):
            self.skipped += len(self.frames) == self.frames.maxlen
            self.frames.append(line)
        elif self.exception is None:
            self.exception = line  # the first unindented line after the frames
        elif len(self.after) < AFTER_EXCEPTION_LINES:
            self.after.append(line)

    def lines(self) -> list[str]:
        exception = [] if self.exception is None else [self.exception]
        frames = list(self.frames)
        room = TAIL_LINES - 1 - len(exception) - len(self.after)
        if self.skipped or len(frames) > room:
            keep = room - 1
            left_out = self.skipped + len(frames) - keep
            frames = [f"  ... {left_out} traceback lines left out ..."] + frames[len(frames) - keep:]
        return [self.header, *frames, *exception, *self.after]


def start_of_traceback(line: str) -> Traceback | None:
    """A traceback header, cut loose from the `\\r` step line it may be glued to."""
    return Traceback(line[line.index(TRACEBACK):]) if TRACEBACK in line else None
