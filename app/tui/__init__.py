"""The cockpit TUI (Textual). `launch()` is what the `cockpit` command calls."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.config import Settings


def launch(ledger_path: Path, read_only: bool = False, settings: Settings | None = None, *,
           quit_question: str = "", on_quit: Callable[[bool], None] | None = None) -> int:
    """Run the cockpit on `ledger_path` until the user quits; returns the exit status."""
    from app.tui.app import make_app  # Textual is imported only when the TUI is wanted

    app = make_app(Path(ledger_path), read_only=read_only, settings=settings,
                   quit_question=quit_question, on_quit=on_quit)
    app.run()
    return app.return_code or 0


def launch_log(path: Path, follow: bool = False) -> int:
    """Run the log viewer alone on `path` (`cockpit log FILE`) until the user quits."""
    from app.tui.app import make_app

    app = make_app(None, log_file=Path(path), follow=follow)
    app.run()
    return app.return_code or 0
