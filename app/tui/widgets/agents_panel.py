"""The agents panel: each agent's branch, state, what it is changing in train.py right now, its
running experiment (progress, time left, loss) and last result, and a preview of its tmux pane.

It posts `AgentsPanel.AgentHighlighted` when the cursor moves and keeps the pane preview on the
highlighted agent. With `watch`, it runs the worktree watcher (app/tui/watcher.py) on its
agents' worktrees and shows the `AgentDiff` / `AgentStates` messages that come back.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from app.ledger.records import Experiment
from app.ledger.vocabulary import state_of, symbol
from app.tui.messages import AgentDiff, AgentStates
from app.tui.poller import AgentStatus
from app.tui.watcher import AgentWatch
from app.tui.widgets.experiments_table import TONES, one_line
from app.tui.widgets.pane_preview import PanePreview
from app.tui.widgets.row_table import RowTable

if TYPE_CHECKING:
    from app.git import DiffStat

COLUMNS = (("agent", "agent", 8), ("state", "state", 8), ("edits", "edits", 6),
           ("running", "running", 34), ("last", "last result", 14), ("branch", "branch", None))
BAR_WIDTH = 10  # characters of a progress bar
RUNNING_BAR_WIDTH = 8  # the panel's own bar: 80 columns fit every column but the branch
EDITS_WIDTH = 6  # "+12 −3"
UNWATCHED_STATES = ("removed", "gone")  # agents whose worktree is not watched
STATE_TONES = {"running": "live", "review": "attention", "waiting": "attention"}
WATCH_AFTER_S = 1.0  # the watcher starts this long after mounting: the first screen comes first
STALE_AFTER_S = 15.0  # a running experiment without a heartbeat this long gets a warning
EMPTY_TEXT = ("No agents yet. Start one with `cockpit agent new NAME` or `n` here (it opens in a "
              "tmux pane beside this one), or run `cockpit run -m \"baseline\"` in a worktree.")


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


def edits_values(stat: DiffStat | None) -> tuple[int, int] | None:
    """(lines added, lines removed) of an uncommitted train.py change; None when unknown."""
    return None if stat is None else (stat.insertions, stat.deletions)


class AgentsPanel(Vertical):
    """A small table of agents with a pane preview, or a hint on how to start one."""

    COMPONENT_CLASSES = {"agents-panel--bar", "agents-panel--good", "agents-panel--bad",
                         "agents-panel--error", "agents-panel--attention", "agents-panel--live",
                         "agents-panel--muted"}

    class AgentHighlighted(Message):
        """The cursor moved to another agent (None: no agents)."""

        def __init__(self, name: str | None) -> None:
            super().__init__()
            self.name = name

    def __init__(self, *, clock: Callable[[], float], ledger_path: Path | None = None,
                 read_only: bool = False, watch: bool = False, id: str | None = None,
                 classes: str | None = None) -> None:
        """`watch`: watch the agents' worktrees (live cockpits; not under a fixed clock)."""
        super().__init__(id=id, classes=classes)
        self._clock = clock
        self._read_only = read_only
        self._values: dict[str, tuple] = {}
        self._agents: dict[str, AgentStatus] = {}
        self._diffs: dict[str, DiffStat | None] = {}
        self._states: dict[str, str] = {}  # refreshed states, shown until the ledger says the same
        self._labels: dict[str, str] = {}  # agent -> "review" / "waiting" (app/supervisor/attention)
        self._places: dict[int, tuple[int, int]] = {}  # queued experiment -> (place, queue length)
        self._watch = (AgentWatch(ledger_path, post=self.post_message)
                       if watch and ledger_path is not None else None)

    def compose(self) -> ComposeResult:
        yield RowTable(cursor_type="row", id="agents-table")
        yield PanePreview(hints="e: diff" if self._read_only else "enter: go to pane · e: diff · K: stop",
                          id="pane-preview")
        yield Static(EMPTY_TEXT, id="agents-empty")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.call_after_refresh(self._restyle))
        if self._watch is not None:
            self.set_timer(WATCH_AFTER_S, lambda: self._watch.start(self) if self._watch else None)

    def on_unmount(self) -> None:
        if self._watch is not None:
            self._watch.stop()

    def _restyle(self) -> None:
        """Re-render every cell with the new theme's colours."""
        table = self.query_one(DataTable)
        for name, row in self._values.items():
            for (column, *_), cell in zip(COLUMNS, self._cells(row)):
                table.update_cell(name, column, cell)
        self._show_preview()

    # -- data in --------------------------------------------------------------------------------

    def show(self, agents: Sequence[AgentStatus], places: dict[int, tuple[int, int]] | None = None,
             labels: dict[str, str] | None = None) -> None:
        """`places`: queued experiments' (place, length) in the GPU queue; `labels`: agents waiting
        for review or input, shown so instead of `running`."""
        self._places = places or {}
        self._labels = labels or {}
        self._agents = {a.name: a for a in agents}
        for agent in agents:  # not watched any more (gone, stopped…): its last diff is stale
            if agent.state in UNWATCHED_STATES:
                self._diffs.pop(agent.name, None)
        if self._watch is not None:
            self._watch.set_agents({a.worktree: a.name for a in agents
                                    if a.worktree and a.state not in UNWATCHED_STATES})
        self._render_rows()

    def on_agent_diff(self, message: AgentDiff) -> None:
        message.stop()
        self._diffs[message.agent] = message.stat
        if message.agent in self._agents:
            self._render_rows()
        if self.is_attached and self.app.screen is not self.screen:  # e.g. the agent's diff is open
            self.app.screen.post_message(AgentDiff(message.agent, message.worktree, message.stat))

    def on_agent_states(self, message: AgentStates) -> None:
        message.stop()
        self._states = message.states
        self._render_rows()

    def _render_rows(self) -> None:
        table = self.query_one(DataTable)
        self.set_class(not self._agents, "-empty")
        values = {name: self._row_values(a) for name, a in self._agents.items()}
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
        self._show_preview()

    # -- the highlighted agent ------------------------------------------------------------------

    def agent(self, name: str) -> AgentStatus | None:
        """The agent as shown (a read-only cockpit's refreshed state included)."""
        agent = self._agents.get(name)
        if agent is None or name not in self._states:
            return agent
        return replace(agent, state=self._states[name])

    def highlight(self, name: str) -> None:
        """Move the cursor to this agent's row and focus the table (from the attention list)."""
        table = self.query_one(DataTable)
        try:
            table.move_cursor(row=table.get_row_index(name))
        except RowDoesNotExist:
            return
        table.focus()

    @property
    def agents(self) -> list[AgentStatus]:
        return [a for a in map(self.agent, self._agents) if a is not None]

    @property
    def selected(self) -> AgentStatus | None:
        table = self.query_one(DataTable)
        if not table.row_count or not table.is_valid_row_index(table.cursor_row):
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.agent(key) if key is not None else None

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._show_preview()
        self.post_message(self.AgentHighlighted(event.row_key.value))

    def _show_preview(self) -> None:
        agent = self.selected
        edits = self._edits_cell(edits_values(self._diffs.get(agent.name)) if agent else None)
        self.query_one(PanePreview).show(agent, edits)

    # -- cells ----------------------------------------------------------------------------------

    def _row_values(self, agent: AgentStatus) -> tuple:
        state = self._states.get(agent.name, agent.state)
        if state == "running" and agent.name in self._labels:
            state = self._labels[agent.name]
        return (one_line(agent.name), one_line(state), edits_values(self._diffs.get(agent.name)),
                self._running_values(agent.running), self._last_values(agent.last),
                one_line(agent.branch))

    def _running_values(self, exp: Experiment | None) -> tuple | None:
        if exp is None:
            return None
        if exp.status == "queued":
            return exp.id, exp.status, self._places.get(exp.id)
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
        name, state, edits, running, last, branch = row
        return (Text(name, no_wrap=True, overflow="ellipsis"),
                Text(state, style=self._style(STATE_TONES.get(state, "muted")), no_wrap=True),
                self._edits_cell(edits), self._running_cell(running), self._last_cell(last),
                Text(branch, no_wrap=True, style=self._style("muted")))

    def _edits_cell(self, edits: tuple[int, int] | None) -> Text:
        """`+12 −3`: lines train.py gains and loses against the branch head, not yet committed."""
        if edits is None:
            return Text("—", style=self._style("muted"))
        added, removed = edits
        if not added and not removed:
            return Text("clean", style=self._style("muted"))
        gap = " " if len(f"+{added} −{removed}") <= EDITS_WIDTH else ""
        return Text.assemble((f"+{added}", self._style("good")), gap, (f"−{removed}", self._style("error")),
                             no_wrap=True, overflow="ellipsis")

    def _running_cell(self, running: tuple | None) -> Text:
        if running is None:
            return Text("—", style=self._style("muted"))
        if running[1] == "queued":
            exp_id, _, place = running
            where = f": {place[0]} of {place[1]}" if place else ""
            return Text.assemble(f"#{exp_id} ", (f"{symbol('queued')} queued for a GPU{where}",
                                                 self._style("attention")))
        exp_id, status, pct, remaining, loss, stale = running
        if status == "registered":
            return Text.assemble(f"#{exp_id} ", ("○ starting", self._style("live")))
        cell = Text.assemble(f"#{exp_id} ", (progress_bar(pct, RUNNING_BAR_WIDTH), self._style("bar")),
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
        return Text.assemble(f"#{exp_id} ", (f"{symbol(state)} {shown}",
                                             self._style(TONES.get(state, "muted"))))
