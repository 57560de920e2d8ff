"""The log viewer of the detail screen: a LogView (log_view.py) with a `/` search bar and a
status line; search runs in a thread worker over the index, never on the UI thread.
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
from app.tui.widgets.log_view import LogView

__all__ = ["LogView", "LogViewer"]


class LogViewer(Vertical):
    """A LogView with a `/` search bar (n / N for next / previous) and a status line."""

    BINDINGS = [
        Binding("slash", "search", "Search", id="log.search", tooltip="Search the log"),
        Binding("n", "find(1)", "Next", id="log.next", tooltip="Next match"),
        Binding("N", "find(-1)", "Prev", id="log.previous", tooltip="Previous match"),
        Binding("escape", "close_search", "Close search", show=False, id="log.close-search"),
    ]

    pattern: reactive[str] = reactive("")
    """The last searched text."""

    class _SearchDone(Message):
        def __init__(self, pattern: str, line: int | None, wrapped: bool, partial: bool) -> None:
            super().__init__()
            self.pattern = pattern
            self.line = line
            self.wrapped = wrapped
            self.partial = partial

    def __init__(self, path: Path, *, live: bool = False, crashed: bool = False,
                 id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.path = path
        self._live = live
        self._crashed = crashed
        self.search_message = ""

    def compose(self) -> ComposeResult:
        yield LogView(self.path, live=self._live, crashed=self._crashed, id="log-view")
        yield Input(placeholder="search the log (Enter; Esc to close)", id="log-search")
        yield Static(id="log-status")

    @property
    def view(self) -> LogView:
        return self.query_one(LogView)

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self._show_status()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "find":
            return bool(self.pattern) or None
        return True

    def action_search(self) -> None:
        search = self.query_one("#log-search", Input)
        search.display = True
        search.value = self.pattern
        search.focus()

    def action_close_search(self) -> None:
        search = self.query_one("#log-search", Input)
        if not search.display:
            raise SkipAction()  # let Esc mean "back" to the screen
        search.display = False
        self.view.focus()

    @on(Input.Submitted, "#log-search")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.pattern = event.value
        self.action_close_search()
        self.action_find(1)

    def action_find(self, direction: int) -> None:
        """The next match after (1) or before (-1) the current one, or from the top of the view."""
        view, pattern = self.view, self.pattern
        if not pattern or view.index is None:
            return
        start = view.match_line + direction if view.match_line is not None else (view.first_line or 0)
        self.search_message = f"searching for {pattern!r}…"
        self._show_status()
        self._search_worker(view.index, pattern, start, direction < 0)

    @work(thread=True, exclusive=True, group="log-search", exit_on_error=False)
    def _search_worker(self, index: LogIndex, pattern: str, start: int, backwards: bool) -> None:
        """Search from `start`, wrapping around the end (or the start, backwards) once."""
        worker = get_current_worker()
        partial = not index.complete
        count = index.line_count
        line = None
        try:
            if 0 <= start < count:
                line = index.find(pattern, start, backwards=backwards,
                                  cancelled=lambda: worker.is_cancelled)
            wrapped = line is None
            if wrapped:
                line = index.find(pattern, count - 1 if backwards else 0, backwards=backwards,
                                  cancelled=lambda: worker.is_cancelled)
        except OSError:
            return  # the viewer closed the log: nobody is waiting for the answer
        if not worker.is_cancelled:
            self.post_message(self._SearchDone(pattern, line, wrapped and line is not None, partial))

    @on(_SearchDone)
    def _search_done(self, message: _SearchDone) -> None:
        scope = " in the part indexed so far" if message.partial else ""
        if message.line is None:
            self.search_message = f"{message.pattern!r} not found{scope}"
        else:
            self.view.go_to_line(message.line)
            wrapped = " (wrapped)" if message.wrapped else ""
            self.search_message = f"{message.pattern!r} at line {message.line + 1:,}{wrapped}"
        self._show_status()

    @on(LogView.Changed)
    def _view_changed(self, event: LogView.Changed) -> None:
        event.stop()
        self._show_status()

    def _show_status(self) -> None:
        self.query_one("#log-status", Static).update(Text(self.status_text()))

    def status_text(self) -> str:
        """One line: where we are, how much is indexed, follow mode, the last search."""
        view = self.view
        if view.error:
            return view.error
        parts = [self.path.name]
        index = view.index
        if view.tail_lines is not None:
            parts.append("end of file (line numbers once indexed)")
        elif view.line_count:
            first = view.first_line or 0
            last = min(view.line_count, first + view.page_height)
            parts.append(f"lines {first + 1:,}–{last:,} of {view.line_count:,}")
        if index is not None and not index.complete:
            parts.append(f"indexing {index.progress:.0%}")
        if view.follow:
            parts.append("following")
        if view.crashed:
            parts.append("crash tail highlighted")
        if self.search_message:
            parts.append(self.search_message)
        return " · ".join(parts)
