"""`cockpit log FILE`: the log viewer on its own, on any file (a run.log, a log from another machine)."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from app.logs.textsafe import sanitize
from app.tui.widgets.log_viewer import LogViewer


class LogScreen(Screen[None]):
    """The file's name, the viewer, the keys; Esc clears a search, q quits."""

    def __init__(self, path: Path, *, follow: bool = False) -> None:
        super().__init__()
        self.path = path
        self.follow = follow

    def compose(self) -> ComposeResult:
        yield Static(Text(sanitize(str(self.path)), no_wrap=True, overflow="ellipsis"), id="log-title")
        yield LogViewer(self.path, live=self.follow, named=False, id="log-viewer")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(LogViewer).view.focus()
