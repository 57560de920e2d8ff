"""The agents panel: each agent's branch, state, running experiment (progress, time left, loss)
and last result.

It posts `AgentsPanel.AgentHighlighted` when the cursor moves, so a pane preview (issue 5) can sit
beside the table and follow the highlighted agent without this widget knowing about tmux.
"""
from __future__ import annotations

from typing import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from app.records import Experiment
from app.tui.poller import AgentStatus, state_of
from app.tui.widgets.experiments_table import SYMBOLS, TONES, one_line

COLUMNS = (("agent", "agent", 8), ("state", "state", 8), ("running", "running", 38),
           ("last", "last result", 16), ("branch", "branch", None))
BAR_WIDTH = 10  # characters of the progress bar
STALE_AFTER_S = 15.0  # a running experiment without a heartbeat this long gets a warning
EMPTY_TEXT = ("No agents yet. Start one with `cockpit agent new NAME` (it opens in a tmux pane "
              "beside this one), or run `cockpit run -m \"baseline\"` in a worktree.")


def progress_bar(pct: float | None, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(100.0, pct or 0.0)) / 100 * width)
    return "█" * filled + "░" * (width - filled)


def duration(seconds: float | None) -> str:
    """`45s`, `2m54s`, `1h02m`."""
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class AgentsPanel(Vertical):
    """A small table of agents, or a hint on how to start one."""

    COMPONENT_CLASSES = {"agents-panel--bar", "agents-panel--good", "agents-panel--bad",
                         "agents-panel--error", "agents-panel--attention", "agents-panel--live",
                         "agents-panel--muted"}

    class AgentHighlighted(Message):
        """The cursor moved to another agent (None: no agents)."""

        def __init__(self, name: str | None) -> None:
            super().__init__()
            self.name = name

    def __init__(self, *, clock: Callable[[], float], id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._clock = clock
        self._values: dict[str, tuple] = {}

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row", id="agents-table")
        yield Static(EMPTY_TEXT, id="agents-empty")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.call_after_refresh(self._restyle))

    def _restyle(self) -> None:
        """Re-render every cell with the new theme's colours."""
        table = self.query_one(DataTable)
        for name, row in self._values.items():
            for (column, *_), cell in zip(COLUMNS, self._cells(row)):
                table.update_cell(name, column, cell)

    def show(self, agents: Sequence[AgentStatus]) -> None:
        table = self.query_one(DataTable)
        self.set_class(not agents, "-empty")
        values = {a.name: self._row_values(a) for a in agents}
        for name in [n for n in self._values if n not in values]:
            table.remove_row(name)
        for name, row in values.items():
            old = self._values.get(name)
            if old is None:
                table.add_row(*self._cells(row), key=name)
            elif old != row:
                for (column, *_), cell, old_value, new_value in zip(COLUMNS, self._cells(row), old, row):
                    if old_value != new_value:
                        table.update_cell(name, column, cell, update_width=column == "branch")
        self._values = values

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self.post_message(self.AgentHighlighted(event.row_key.value))

    # -- cells ----------------------------------------------------------------------------------

    def _row_values(self, agent: AgentStatus) -> tuple:
        return (one_line(agent.name), one_line(agent.state), self._running_values(agent.running),
                self._last_values(agent.last), one_line(agent.branch))

    def _running_values(self, exp: Experiment | None) -> tuple | None:
        if exp is None:
            return None
        stale = None
        if exp.status == "running" and exp.heartbeat_at is not None:
            silent = self._clock() - exp.heartbeat_at
            stale = duration(silent) if silent > STALE_AFTER_S else None
        loss = f"{exp.last_loss:.3f}" if exp.last_loss is not None else None
        return (exp.id, exp.status, exp.progress_pct, duration(exp.remaining_s)
                if exp.remaining_s is not None else None, loss, stale)

    @staticmethod
    def _last_values(exp: Experiment | None) -> tuple | None:
        if exp is None:
            return None
        state = state_of(exp)
        return exp.id, state, exp.val_bpb_text if exp.val_bpb is not None else state

    def _style(self, tone: str):
        return self.get_component_rich_style(f"agents-panel--{tone}", partial=True)

    def _cells(self, row: tuple) -> tuple[Text, ...]:
        name, state, running, last, branch = row
        return (Text(name, no_wrap=True, overflow="ellipsis"),
                Text(state, style=self._style("live" if state == "running" else "muted"), no_wrap=True),
                self._running_cell(running), self._last_cell(last),
                Text(branch, no_wrap=True, style=self._style("muted")))

    def _running_cell(self, running: tuple | None) -> Text:
        if running is None:
            return Text("—", style=self._style("muted"))
        exp_id, status, pct, remaining, loss, stale = running
        if status == "registered":
            return Text.assemble(f"#{exp_id} ", ("○ starting", self._style("live")))
        cell = Text.assemble(f"#{exp_id} ", (progress_bar(pct), self._style("bar")),
                             f" {pct or 0:>3.0f}%")
        if remaining:
            cell.append(f" {remaining}")
        if loss:
            cell.append(f" loss {loss}")
        if stale:
            cell.append(f" ⚠ silent {stale}", style=self._style("error"))
        return cell

    def _last_cell(self, last: tuple | None) -> Text:
        if last is None:
            return Text("—", style=self._style("muted"))
        exp_id, state, shown = last
        return Text.assemble(f"#{exp_id} ", (f"{SYMBOLS.get(state, '·')} {shown}",
                                             self._style(TONES.get(state, "muted"))))
