"""The log viewer (detail screen and `cockpit log FILE`): a LogView (log_view.py) with a `/` search
bar, a `:` go-to-line bar and a status line.

Search works on the raw bytes (app/logs/search.py) in thread workers, never on the UI thread: a hit
inside a `\\r` progress step that the collapsed view does not show switches the view to every step
(`x`), so `step 03000` of a 7000-step line is found. The matches are counted in a second worker.
"""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.actions import SkipAction
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from app.logs.index import LogIndex
from app.logs.search import Counted, count_hits, find_hit
from app.logs.textsafe import sanitize
from app.tui.widgets.log_view import LogView

__all__ = ["TRACEBACK", "LogView", "LogViewer"]

TRACEBACK = "Traceback (most recent call last)"


class LogViewer(Vertical):
    """A LogView with search (n / N, match count), go-to-line, traceback jump and a status line."""

    BINDINGS = [
        Binding("slash", "search", "Search", id="log.search", tooltip="Search the log"),
        Binding("n", "find(1)", "Next", id="log.next", tooltip="Next match"),
        Binding("N", "find(-1)", "Prev", id="log.previous", tooltip="Previous match"),
        Binding("colon", "go_to_line", "Go to line", show=False, id="log.goto", key_display=":",
                tooltip="Go to a line number"),
        Binding("t", "traceback", "Traceback", show=False, id="log.traceback",
                tooltip="Jump to the first traceback"),
        Binding("escape", "close_search", "Clear search", show=False, id="log.close-search"),
    ]

    pattern: reactive[str] = reactive("")
    """The last searched text."""

    class _SearchDone(Message):
        def __init__(self, pattern: str, offset: int | None, wrapped: bool,
                     expanded: bool, row: int | None) -> None:
            super().__init__()
            self.pattern = pattern
            self.offset = offset
            self.wrapped = wrapped
            self.expanded = expanded
            self.row = row

    class _Counted(Message):
        def __init__(self, counted: Counted) -> None:
            super().__init__()
            self.counted = counted

    def __init__(self, path: Path, *, live: bool = False, crashed: bool = False, named: bool = True,
                 id: str | None = None, classes: str | None = None) -> None:
        """`named`: the status line starts with the file's name (off where a title shows it)."""
        super().__init__(id=id, classes=classes)
        self.path = path
        self.named = named
        self._live = live
        self._crashed = crashed
        self.search_message = ""
        self.match_offset: int | None = None  # byte offset of the current match
        self.counted: Counted | None = None  # every match of `pattern`, once counted

    def compose(self) -> ComposeResult:
        yield LogView(self.path, live=self._live, crashed=self._crashed, id="log-view")
        yield Input(placeholder="search the log (Enter; Esc to close)", id="log-search")
        yield Input(placeholder="go to line (Enter; Esc to close)", type="integer", id="log-goto")
        yield Static(id="log-status")

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        for bar in self.query(Input):
            bar.display = False
        self._show_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "find":
            return bool(self.pattern) or None
        return True

    # --- the bars ------------------------------------------------------------------------------

    def _open_bar(self, bar_id: str, value: str) -> None:
        for bar in self.query(Input):
            bar.display = bar.id == bar_id
        bar = self.query_one(f"#{bar_id}", Input)
        bar.value = value
        bar.focus()

    def action_search(self) -> None:
        self._open_bar("log-search", self.pattern)

    def action_go_to_line(self) -> None:
        self._open_bar("log-goto", "")

    def action_close_search(self) -> None:
        """Esc: close an open bar, else forget the search; only then does Esc leave the screen."""
        bars = [bar for bar in self.query(Input) if bar.display]
        if bars:
            for bar in bars:
                bar.display = False
        elif self.pattern or self.search_message:
            self.workers.cancel_group(self, "log-search")
            self.workers.cancel_group(self, "log-count")
            self.pattern, self.search_message = "", ""
            self.match_offset, self.counted = None, None
            self.view.highlight = ""
            self.view.match_line = None
            self.view.refresh()
            self._show_status()
        else:
            raise SkipAction()
        self.view.focus()

    @on(Input.Submitted, "#log-search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#log-search", Input).display = False
        self.view.focus()
        self.start_search(event.value)

    @on(Input.Submitted, "#log-goto")
    def _goto_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#log-goto", Input).display = False
        view = self.view
        view.focus()
        try:
            line = int(event.value)
        except ValueError:
            return
        if not view.line_count:
            return
        line = min(max(line, 1), view.line_count)
        view.go_to_line(line - 1)
        self.search_message = f"line {line:,}"
        self._show_status()

    # --- search --------------------------------------------------------------------------------

    def start_search(self, pattern: str, from_top: bool = False) -> None:
        """Search for `pattern` from the top of the view (or of the file) and count its matches."""
        self.pattern = pattern
        self.match_offset = None
        self.counted = None
        self.view.highlight = pattern
        self.view.refresh()
        if not pattern:
            self.search_message = ""
            self._show_status()
            return
        self._find(1, 0 if from_top else None)
        index = self.view.indexes.get(False)
        if index is not None:
            self._count_worker(index, pattern)

    def action_traceback(self) -> None:
        self.start_search(TRACEBACK, from_top=True)

    def action_find(self, direction: int) -> None:
        """The next match after (1) or before (-1) the current one, or from the top of the view."""
        self._find(direction, None)

    def _find(self, direction: int, start: int | None) -> None:
        view, pattern = self.view, self.pattern
        if not pattern or view.index is None or not view.indexes:
            return
        if start is None:
            if self.match_offset is not None:
                start = self.match_offset + (1 if direction > 0 else 0)
            else:
                top = view.first_line or 0
                start = view.index.row_range(top)[0] if top < view.line_count else 0
        self.search_message = f"searching for {pattern!r}…"
        self._show_status()
        self._search_worker(view.indexes[False], view.indexes[True], view.expanded, pattern, start,
                            direction < 0)

    @work(thread=True, exclusive=True, group="log-search", exit_on_error=False)
    def _search_worker(self, lines: LogIndex, steps: LogIndex, expanded: bool, pattern: str,
                       start: int, backwards: bool) -> None:
        """The next hit from byte `start`, wrapping around once, and the row that shows it."""
        worker = get_current_worker()

        def cancelled() -> bool:
            return worker.is_cancelled

        try:
            lines.refresh()
            hit = find_hit(lines, pattern, start, backwards, cancelled)
            wrapped = hit is None
            if wrapped:
                hit = find_hit(lines, pattern, lines.size if backwards else 0, backwards, cancelled)
            row = None
            if hit is not None and not expanded and lines.index_through(hit, cancelled):
                row = lines.row_of_offset(hit)
                if row is not None:
                    shown_start, shown_end = lines.shown_range(row)
                    if not shown_start <= hit < shown_end:
                        expanded, row = True, None  # an overwritten \r step: show every step
            if hit is not None and expanded and steps.index_through(hit, cancelled):
                row = steps.row_of_offset(hit)
        except OSError:
            return  # the viewer closed the log: nobody is waiting for the answer
        if not worker.is_cancelled:
            self.post_message(self._SearchDone(pattern, hit, wrapped and hit is not None, expanded, row))

    @work(thread=True, exclusive=True, group="log-count", exit_on_error=False)
    def _count_worker(self, index: LogIndex, pattern: str) -> None:
        worker = get_current_worker()
        try:
            counted = count_hits(index, pattern, lambda: worker.is_cancelled)
        except OSError:
            return
        if counted is not None and not worker.is_cancelled:
            self.post_message(self._Counted(counted))

    @on(_SearchDone)
    def _search_done(self, message: _SearchDone) -> None:
        if message.pattern != self.pattern:
            return
        view = self.view
        if message.offset is None or message.row is None:
            self.match_offset = None
            what = "no traceback" if message.pattern == TRACEBACK else f"{message.pattern!r} not found"
            self.search_message = what
        else:
            self.match_offset = message.offset
            view.show_steps(message.expanded)
            view.go_to_line(message.row)
            self.search_message = self._match_text(message.row, message.wrapped)
        self._show_status()

    @on(_Counted)
    def _counted(self, message: _Counted) -> None:
        if message.counted.pattern == self.pattern:
            self.counted = message.counted
            if self.match_offset is not None and self.view.match_line is not None:
                self.search_message = self._match_text(self.view.match_line, False)
            self._show_status()

    def _match_text(self, row: int, wrapped: bool) -> str:
        what = "traceback" if self.pattern == TRACEBACK else repr(self.pattern)
        where = f"row {row + 1:,}" if self.view.expanded else f"line {row + 1:,}"
        counted, ordinal = self.counted, None
        if counted is not None and self.match_offset is not None:
            ordinal = counted.ordinal(self.match_offset)
        count = (f"match {ordinal:,} of {counted.total:,}" if counted and ordinal
                 else f"{counted.total:,} matches" if counted else "counting…")
        return f"{what} at {where}: {count}" + (" (wrapped)" if wrapped else "")

    # --- status --------------------------------------------------------------------------------

    @on(LogView.Changed)
    def _view_changed(self, event: LogView.Changed) -> None:
        event.stop()
        self._show_status()

    def _show_status(self) -> None:
        self.query_one("#log-status", Static).update(Text(sanitize(self.status_text())))

    def status_text(self) -> str:
        """One line: the last search, where we are, how much is indexed, the modes."""
        view = self.view
        if view.error:
            return view.error
        parts = [self.path.name] if self.named else []
        if self.search_message:
            parts.append(self.search_message)
        index = view.index
        unit = "rows" if view.expanded else "lines"
        if view.tail_lines is not None:
            parts.append("end of file (line numbers once indexed)")
        elif view.line_count:
            first = view.first_line or 0
            last = min(view.line_count, first + view.page_height)
            parts.append(f"{unit} {first + 1:,}–{last:,} of {view.line_count:,}")
        if index is not None and not index.complete:
            parts.append(f"indexing {index.progress:.0%}")
        modes = [name for name, on_ in (("every \\r step shown", view.expanded), ("wrap", view.wrap),
                                        ("following", view.follow),
                                        ("crash tail highlighted", view.crashed)) if on_]
        parts += modes
        return " · ".join(parts)
