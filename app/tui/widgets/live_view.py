"""Live view of one running experiment: its log tail, its `\\r` progress as ONE live line, and
its loss curve over the tag best's curve at the same progress (is it trailing already?).

A thread worker follows the log with `app.logs.tail.LogTail` and posts batches of complete lines;
the handler writes them with `Log.write_lines` (bounded by `max_lines`). Switching to another
experiment cancels the worker (exclusive group) and clears the view.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Container, Horizontal, Vertical
from textual.message import Message
from textual.widgets import Log, Static
from textual.worker import get_current_worker

from app.ledger.records import Experiment
from app.ledger.vocabulary import state_of
from app.logs.tail import READ_CHUNK_BYTES, LogTail
from app.tui.poller import FollowData
from app.tui.widgets.agents_panel import duration, progress_bar
from app.tui.widgets.experiments_table import one_line

if TYPE_CHECKING:
    from app.tui.widgets.loss_curve import LossCurve

MAX_LOG_LINES = 2000  # lines the live log keeps
TAIL_INTERVAL_S = 0.05  # how often the worker looks for new bytes
IDLE_TEXT = ("Nothing running. When an agent starts an experiment (`cockpit run`), its log and "
             "loss curve stream here; select a running row to follow it.")


class LiveView(Vertical):
    """Follows one experiment; `follow(None)` shows the idle hint."""

    class LogUpdate(Message):
        """New complete lines and the current live line of the followed log."""

        def __init__(self, exp_id: int, lines: list[str], live: str, reset: bool) -> None:
            super().__init__()
            self.exp_id = exp_id
            self.lines = lines
            self.live = live
            self.reset = reset

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.exp_id: int | None = None
        self.curve: LossCurve | None = None
        self._curves: tuple = ((), ())
        self._follow: FollowData | None = None
        self._lines: dict[str, Text] = {}  # what the one-line Statics show

    def compose(self) -> ComposeResult:
        yield Static(id="live-title")
        with Horizontal(id="live-body"):
            with Vertical(id="live-log-pane"):
                yield Log(max_lines=MAX_LOG_LINES, id="live-log")
                yield Static(id="live-progress")
            yield Container(id="live-curve")  # the LossCurve is mounted after the first paint
        yield Static(IDLE_TEXT, id="live-idle")

    def on_mount(self) -> None:
        self.call_after_refresh(self._mount_curve)

    def _mount_curve(self) -> None:
        from app.tui.widgets.loss_curve import LossCurve  # plotext: slow to import, not needed first

        slot = self.query_one("#live-curve")
        if not slot.is_attached:  # the app is already closing
            return
        self.curve = LossCurve()
        slot.mount(self.curve)
        if self._follow is not None:
            self._show_curves(self._follow)

    @property
    def log_widget(self) -> Log:
        return self.query_one("#live-log", Log)

    def follow(self, exp: Experiment | None) -> None:
        """Start following `exp`'s log (no-op if it is already the one followed)."""
        exp_id = exp.id if exp is not None else None
        if exp_id == self.exp_id:
            return
        self.exp_id = exp_id
        self.set_class(exp is None, "-idle")
        self.log_widget.clear()
        self._curves = ((), ())
        self._follow = None
        if self.curve is not None:
            self.curve.set_curves([], None)
        self._set_line("#live-progress", Text(""))
        self.workers.cancel_group(self, "live-tail")
        if exp is not None and exp.log_path:
            self._tail(Path(exp.log_path), exp.id)

    def show(self, follow: FollowData | None) -> None:
        """Refresh the title line and the loss curves from the poller's data."""
        if follow is None or follow.experiment.id != self.exp_id:
            return
        exp = follow.experiment
        title = Text.assemble((f"#{exp.id} ", "bold"), one_line(exp.agent), " · ",
                              one_line(exp.description))
        if exp.status == "running":
            title.append(f"  {progress_bar(exp.progress_pct)} {exp.progress_pct or 0:.0f}%")
            if exp.remaining_s is not None:
                title.append(f" · {duration(exp.remaining_s)} left")
        elif exp.status != "registered":
            title.append(f"  ({state_of(exp)})")
        if follow.best is not None:
            title.append(f" · vs best #{follow.best.id} {follow.best.val_bpb_text}")
        self._set_line("#live-title", title)
        self._follow = follow
        if self.curve is not None:
            self._show_curves(follow)

    def _show_curves(self, follow: FollowData) -> None:
        curves = (follow.curve, follow.best_curve)
        if curves != self._curves and self.curve is not None:
            self._curves = curves
            labels = (f"#{follow.experiment.id}", f"best #{follow.best.id}" if follow.best else "best")
            self.curve.set_curves(follow.curve, follow.best_curve or None, labels)

    def _set_line(self, selector: str, text: Text) -> None:
        """Update a one-line Static only when its text changed, without a layout pass (its size
        is fixed in the stylesheet): a relayout repaints the whole screen, too slow for 20/s."""
        line = self.query_one(selector, Static)
        if self._lines.get(selector) != text:
            self._lines[selector] = text
            line.update(text, layout=False)

    def on_live_view_log_update(self, message: LogUpdate) -> None:
        message.stop()
        if message.exp_id != self.exp_id:
            return
        log = self.log_widget
        if message.reset:
            log.clear()
        if message.lines:
            log.write_lines(message.lines)
            if len(log.lines) >= MAX_LOG_LINES:
                # at max_lines the content shifts under an unchanged scroll offset, and Textual 8's
                # Log repaints nothing: repaint the visible lines ourselves
                log.refresh()
        self._set_line("#live-progress", Text(message.live, no_wrap=True, overflow="ellipsis"))

    @work(thread=True, exclusive=True, group="live-tail", exit_on_error=False)
    def _tail(self, path: Path, exp_id: int) -> None:
        worker = get_current_worker()
        last_live: str | None = None
        with LogTail(path) as tail:
            while not worker.is_cancelled:
                before = tail.offset
                chunk = tail.read()
                if chunk.lines or chunk.reset or chunk.live != last_live:
                    last_live = chunk.live
                    self.post_message(self.LogUpdate(exp_id, chunk.lines, chunk.live, chunk.reset))
                if tail.offset - before < READ_CHUNK_BYTES:
                    time.sleep(TAIL_INTERVAL_S)
