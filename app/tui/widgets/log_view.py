"""A virtual-scrolling view of a training log of any size, over app.logs.index.LogIndex.

Only the lines on screen are read from disk and rendered (Line API), so a 1 GB log never enters
widget memory. The index is built by a thread worker while the first screen is already shown;
"jump to end" works before it finishes by showing the tail found by scanning back from the end.
A `\\r` progress line shows its last step; `x` switches to a second index (built on demand) where
every `\\r` step is a row. `w` wraps long lines (the view still scrolls by line).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

from rich.cells import chop_cells
from rich.segment import Segment
from rich.style import Style
from textual import on, work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from app.logs.index import CRASH_TAIL_LINES, LogIndex

FOLLOW_POLL_S = 0.25  # how often a live log is checked for new bytes
FIRST_SCREEN_LINES = 200  # lines indexed before the first paint, in the UI thread ...
FIRST_SCREEN_BYTES = 8 * 1024 * 1024  # ... or this many bytes, whichever comes first
WORKER_CHUNK = 1024 * 1024  # bytes indexed per step by the worker
WORKER_DUTY = 0.5  # share of the time the worker indexes; it sleeps the rest, so the UI thread
# (which needs the GIL the byte scanning holds) stays responsive
PROGRESS_EVERY_S = 0.05  # the worker reports progress at most this often
TAIL_SPAN = 500  # lines shown by "jump to end" while the index is still being built
TEXT_CACHE = 2000  # rendered line texts kept


class _Latest(Message):
    """A high-rate message: a newer one replaces an unhandled older one of the same type."""

    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


class LogView(ScrollView, can_focus=True):
    """The lines of one log file; scroll with the usual keys, `end`/`G` jumps to the end."""

    COMPONENT_CLASSES = {"log-view--line-number", "log-view--crash-tail", "log-view--match",
                         "log-view--current"}
    BINDINGS = [
        Binding("up", "scroll_rows(-1)", "Up", show=False, id="log.up"),
        Binding("down", "scroll_rows(1)", "Down", show=False, id="log.down"),
        Binding("pageup", "scroll_pages(-1)", "Page up", show=False, id="log.page-up"),
        Binding("pagedown,space", "scroll_pages(1)", "Page down", show=False, id="log.page-down"),
        Binding("home,g", "scroll_home", "Top", show=False, id="log.top"),
        Binding("end,G", "scroll_end", "End", id="log.end", tooltip="Jump to the end of the log"),
        Binding("f", "toggle_follow", "Follow", id="log.follow", tooltip="Keep showing new lines"),
        Binding("x", "toggle_steps", "\\r steps", id="log.steps",
                tooltip="Show every \\r progress step as a row, or only the last one of each line"),
        Binding("w", "toggle('wrap')", "Wrap", show=False, id="log.wrap", tooltip="Wrap long lines"),
    ]

    follow: reactive[bool] = reactive(False)
    """Scroll to new lines as a live log grows."""
    expanded: reactive[bool] = reactive(False)
    """Every `\\r` step a row (the segment index) instead of each line's last step."""
    wrap: reactive[bool] = reactive(False)
    """Long lines continue on the next screen rows instead of scrolling sideways."""

    class Changed(_Latest):
        """Something the status line shows changed (position, size, indexing, follow)."""

    class _Indexed(_Latest):
        """The worker indexed more of the file (or the file grew)."""

    class _Failed(Message):
        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    class _TailLoaded(Message):
        def __init__(self, lines: list[str]) -> None:
            super().__init__()
            self.lines = lines

    def __init__(self, path: Path, *, live: bool = False, crashed: bool = False,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.path = path
        self.live = live
        self.crashed = crashed
        self.index: LogIndex | None = None  # the one shown: self.indexes[self.expanded]
        self.indexes: dict[bool, LogIndex] = {}
        self.highlight = ""  # the searched text, marked wherever it shows
        self._anchor: int | None = None  # byte offset to show once the new index reaches it
        self._wrapped: tuple[tuple, list[tuple[int, int, str]]] | None = None
        self.error: str | None = None
        self.line_count = 0
        self.match_line: int | None = None
        self.tail_lines: list[str] | None = None  # set while "end" is shown before indexing ends
        self._texts: OrderedDict[int, str] = OrderedDict()
        self._widest = 0
        self.set_reactive(LogView.follow, live)

    # --- lifecycle -----------------------------------------------------------------------------

    def on_mount(self) -> None:
        try:
            self.indexes = {False: LogIndex(self.path), True: LogIndex(self.path, segments=True)}
            self.index = self.indexes[False]
            while (self.index.line_count < FIRST_SCREEN_LINES and not self.index.complete
                   and self.index.scanned < FIRST_SCREEN_BYTES):
                self.index.index_more(WORKER_CHUNK)
        except OSError as exc:
            self.error = f"Cannot open the log {self.path}: {exc.strerror or exc}"
            self.post_message(self.Changed())
            return
        self._indexed()
        self.call_after_refresh(self._index_worker, self.index)  # after the first paint

    def on_unmount(self) -> None:
        for index in self.indexes.values():
            index.close()

    @work(thread=True, exclusive=True, group="log-index", exit_on_error=False)
    def _index_worker(self, index: LogIndex) -> None:
        """Index the whole file, then (for a live run) keep picking up appended bytes."""
        worker = get_current_worker()
        reported = 0.0
        while not worker.is_cancelled:
            started = time.monotonic()
            try:
                complete = index.index_more(WORKER_CHUNK)
            except OSError as exc:
                self.post_message(self._Failed(f"Reading {self.path} failed: {exc}"))
                return
            now = time.monotonic()
            if complete or now - reported >= PROGRESS_EVERY_S:
                self.post_message(self._Indexed())
                reported = now
            if not complete:
                time.sleep((now - started) * (1 - WORKER_DUTY) / WORKER_DUTY)
            elif not self.live:
                return
            else:
                time.sleep(FOLLOW_POLL_S)
                try:
                    index.refresh()
                except OSError as exc:
                    self.post_message(self._Failed(f"Reading {self.path} failed: {exc}"))
                    return

    @work(thread=True, exclusive=True, group="log-tail", exit_on_error=False)
    def _tail_worker(self, index: LogIndex) -> None:
        try:
            lines = index.tail(TAIL_SPAN)
        except OSError as exc:
            self.post_message(self._Failed(f"Reading {self.path} failed: {exc}"))
            return
        if not get_current_worker().is_cancelled:
            self.post_message(self._TailLoaded(lines))

    @on(_Failed)
    def _failed(self, message: _Failed) -> None:
        self.error = message.reason
        self.post_message(self.Changed())

    @on(_Indexed)
    def _indexed(self) -> None:
        index = self.index
        if index is None:
            return
        at_end = self.is_vertical_scroll_end
        count = index.line_count
        if count < self.line_count:  # the file shrank: start over
            self._texts.clear()
        elif self.line_count:
            self._texts.pop(self.line_count - 1, None)  # the last line may have grown
        self.line_count = count
        self._wrapped = None
        if self._anchor is not None and (row := index.row_of_offset(self._anchor)) is not None:
            self._anchor = None
            self._resize()
            self.scroll_to(y=row, animate=False, force=True)
        elif self.tail_lines is not None and index.complete:
            self._leave_tail()
            self._to_end()
        elif self.tail_lines is None:
            self._resize()
            if self.follow and at_end:
                self._to_end()
        self.refresh()
        self.post_message(self.Changed())

    @on(_TailLoaded)
    def _tail_loaded(self, message: _TailLoaded) -> None:
        if self.index is not None and self.index.complete:
            return  # the full index won the race: scroll_end already happened
        self.tail_lines = message.lines
        self._texts.clear()
        self._resize()
        self._to_end()
        self.refresh()
        self.post_message(self.Changed())

    # --- geometry ------------------------------------------------------------------------------

    @property
    def gutter_width(self) -> int:
        return max(4, len(str(self.line_count))) + 1

    def _to_end(self) -> None:
        """Scroll to the last line, forced: the scrollbars only learn the new size on layout."""
        self.scroll_end(animate=False, immediate=True, x_axis=False, force=True)

    def _leave_tail(self) -> None:
        """Back from the unindexed tail to line numbers of the whole file."""
        if self.tail_lines is not None:
            self.tail_lines = None
            self._texts.clear()
            self._resize()

    def _resize(self) -> None:
        height = len(self.tail_lines) if self.tail_lines is not None else self.line_count
        width = 0 if self.wrap else self._widest + self.gutter_width
        self.virtual_size = Size(width, height)

    @property
    def page_height(self) -> int:
        """Rows of text on screen (the horizontal scrollbar takes one when shown)."""
        return self.scrollable_content_region.height

    @property
    def first_line(self) -> int | None:
        """The line number at the top of the view; None while showing the unindexed tail."""
        return None if self.tail_lines is not None else int(self.scroll_y)

    def on_resize(self) -> None:
        self.post_message(self.Changed())

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.post_message(self.Changed())

    # --- rendering -----------------------------------------------------------------------------

    def text_at(self, row: int) -> str | None:
        """The text of virtual row `row` (a line number, or a tail position), cached."""
        if self.tail_lines is not None:
            return self.tail_lines[row] if 0 <= row < len(self.tail_lines) else None
        if self.index is None or not 0 <= row < self.line_count:
            return None
        text = self._texts.get(row)
        if text is None:
            try:
                text = self.index.line(row)
            except (IndexError, OSError):
                return None
            self._texts[row] = text
            if len(self._texts) > TEXT_CACHE:
                self._texts.popitem(last=False)
            if len(text) > self._widest:
                self._widest = len(text)
                self.call_later(self._resize)
        else:
            self._texts.move_to_end(row)
        return text

    def _in_crash_tail(self, row: int) -> bool:
        if not self.crashed:
            return False
        rows = len(self.tail_lines) if self.tail_lines is not None else self.line_count
        return row >= rows - CRASH_TAIL_LINES

    def _wrapped_rows(self, scroll_y: int, width: int) -> list[tuple[int, int, str]]:
        """(row, piece number, text) for each screen row when wrapping, computed once per frame."""
        key = (scroll_y, width, self.line_count, self.expanded, self.tail_lines is not None)
        if self._wrapped is None or self._wrapped[0] != key:
            rows: list[tuple[int, int, str]] = []
            row = scroll_y
            while len(rows) < self.size.height and (text := self.text_at(row)) is not None:
                rows += [(row, n, piece) for n, piece in enumerate(chop_cells(text, width) or [""])]
                row += 1
            self._wrapped = (key, rows)
        return self._wrapped[1]

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        gutter = self.gutter_width
        base = self.rich_style
        if self.wrap:
            rows = self._wrapped_rows(scroll_y, max(1, width - gutter))
            if y >= len(rows):
                return Strip.blank(width, base)
            row, piece, text = rows[y]
            scroll_x = 0
        else:
            row, piece = scroll_y + y, 0
            shown = self.text_at(row)
            if shown is None:
                return Strip.blank(width, base)
            text = shown
        style = base
        if self._in_crash_tail(row):
            style += self.get_component_rich_style("log-view--crash-tail")
        current = row == self.match_line and self.tail_lines is None
        if current:
            style += self.get_component_rich_style("log-view--current")
        number = "" if self.tail_lines is not None or piece else str(row + 1)
        number_style = base + self.get_component_rich_style("log-view--line-number")
        left = Strip([Segment(number.rjust(gutter - 1) + " ", number_style)], gutter)
        segments = self._marked(text, style)
        body = Strip(segments).crop_extend(scroll_x, scroll_x + max(0, width - gutter), style)
        return Strip.join([left, body]).crop(0, width)

    def _marked(self, text: str, style: Style) -> list[Segment]:
        """The text as segments, with every occurrence of the searched text marked."""
        pattern = self.highlight
        if not pattern:
            return [Segment(text, style)]
        haystack = text.lower() if pattern == pattern.lower() else text
        mark = style + self.get_component_rich_style("log-view--match")
        segments, at = [], 0
        while (hit := haystack.find(pattern, at)) >= 0:
            segments += [Segment(text[at:hit], style), Segment(text[hit:hit + len(pattern)], mark)]
            at = hit + len(pattern)
        return [*segments, Segment(text[at:], style)]

    # --- actions -------------------------------------------------------------------------------

    def action_scroll_rows(self, rows: int) -> None:
        self.scroll_to(y=self.scroll_y + rows, animate=False, immediate=True)

    def action_scroll_pages(self, pages: int) -> None:
        self.action_scroll_rows(pages * self.page_height)

    def action_scroll_home(self) -> None:
        self._leave_tail()
        self.follow = False
        self.scroll_to(0, 0, animate=False, immediate=True)

    def action_scroll_end(self) -> None:
        """Show the last lines: at once when indexed, else via a scan back from the end."""
        if self.index is None:
            return
        if self.index.complete:
            self._to_end()
        else:
            self._tail_worker(self.index)

    def action_toggle_steps(self) -> None:
        """Between each line's last `\\r` step and every step, staying at the same place."""
        anchor = None
        if self.index is not None and self.first_line is not None and self.line_count:
            anchor = self.index.row_range(min(self.first_line, self.line_count - 1))[0]
        self.show_steps(not self.expanded, anchor)

    def show_steps(self, expanded: bool, anchor: int | None = None) -> None:
        """Show the segment index (expanded) or the line index; `anchor`: a byte offset to show."""
        if not self.indexes or expanded == self.expanded:
            return
        self.expanded = expanded
        self.index = self.indexes[expanded]
        self._leave_tail()
        self._texts.clear()
        self._widest, self.match_line, self.line_count = 0, None, 0
        self._anchor = anchor
        self._indexed()
        self._index_worker(self.index)

    def watch_wrap(self) -> None:
        self._wrapped = None
        self._resize()
        self.refresh()
        self.post_message(self.Changed())

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        if self.follow:
            if not self.live and self.index is not None:
                self.live = True  # from now on the worker keeps picking up appended lines
                self._index_worker(self.index)
            self.action_scroll_end()
        self.post_message(self.Changed())

    def go_to_line(self, line: int) -> None:
        """Highlight `line` and scroll it into the middle of the view."""
        self._leave_tail()
        if self.index is not None and self.index.line_count > self.line_count:
            self._indexed()  # a search indexed past what the worker has reported
        self.match_line = line
        self.follow = False
        top = max(0, line - self.page_height // 2)
        self.scroll_to(y=top, animate=False, force=True)  # again once the new height is laid out:
        self.call_after_refresh(self.scroll_to, y=top, animate=False, force=True)
        self.refresh()
