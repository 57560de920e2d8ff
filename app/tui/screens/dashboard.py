"""The dashboard: agents, experiments (sort, filter, search), the val_bpb progression and the live
view of a running experiment, kept current by a thread worker polling the ledger."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import get_current_worker

from app.ledger.dashboard import SORTS
from app.ledger.records import Experiment
from app.ledger.vocabulary import EXPERIMENT_ACTIONS, STATES, actions_for
from app.logs.textsafe import sanitize
from app.tui.agent_flows import can_stop
from app.tui.experiment_flows import WRITE_ACTIONS
from app.tui.messages import LedgerChanged, LedgerUnavailable
from app.tui.poller import DashboardData, LedgerPoller
from app.tui.screens.attention import agent_labels
from app.tui.screens.status_lines import header_text, table_status_text
from app.tui.widgets.agents_panel import AgentsPanel
from app.tui.widgets.experiments_table import ExperimentsTable
from app.tui.widgets.gpu_strip import GpuStrip
from app.tui.widgets.live_view import LiveView

if TYPE_CHECKING:
    from app.tui.app import CockpitApp
    from app.tui.widgets.progression_plot import ProgressionPlot

NO_LEDGER_TEXT = ("No ledger at {path}\n\nRun `cockpit run -m \"baseline\"` in an agent worktree "
                  "to record the first experiment, or `cockpit demo` to look around with sample "
                  "data. This screen updates by itself as soon as the ledger appears.")
BROKEN_LEDGER_TEXT = "Cannot read the ledger:\n{reason}\n\nRetrying every half second."
NO_EXPERIMENTS_TEXT = ("No experiments yet. In an agent's worktree, `cockpit run -m \"baseline\"` "
                       "records the first one; agents started with `cockpit agent new NAME` do "
                       "it on their own.")
ROW_KEYS = frozenset({"kill", "approve", "reject", "adopt", "note", "mark", "compare"})  # act on the row


def _cycle(options: list, current: object) -> object:
    return options[(options.index(current) + 1) % len(options)] if current in options else options[0]


class DashboardScreen(Screen):
    """Everything at a glance; keys act on the highlighted experiment."""

    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (34, "-tall")]
    BINDINGS = [
        Binding("enter", "open", "Open", id="dashboard.open"),
        Binding("k", "kill", "Kill", id="dashboard.kill", tooltip="Stop the running experiment"),
        Binding("a", "approve", "Approve", id="dashboard.approve"),
        Binding("r", "reject", "Reject", id="dashboard.reject"),
        Binding("o", "adopt", "Adopt", id="dashboard.adopt", tooltip="Adopt into main"),
        Binding("N", "note", "Note", id="dashboard.note"),
        Binding("m", "mark", "Mark", id="dashboard.mark", show=False),
        Binding("c", "compare", "Compare", id="dashboard.compare"),
        Binding("slash", "search", "Search", id="dashboard.search"),
        Binding("s", "cycle_sort", "Sort", id="dashboard.sort", show=False),
        Binding("t", "cycle_tag", "Tag filter", id="dashboard.tag", show=False,
                tooltip="Show one tag's experiments (the plot and header follow)"),
        Binding("T", "cycle_plot_tag", "Plot tag", id="dashboard.plot_tag", show=False,
                tooltip="The tag the plot and the header's best show (it never changes by itself)"),
        Binding("d", "cycle_state", "Decision filter", id="dashboard.state", show=False),
        Binding("A", "cycle_agent", "Agent filter", id="dashboard.agent", show=False),
        Binding("escape", "clear_filters", "Clear filters", id="dashboard.clear", show=False),
        Binding("p", "toggle_plot", "Plot", id="dashboard.plot", show=False),
        Binding("n", "new_agent", "New agent", id="dashboard.new_agent", show=False),
        Binding("K", "stop_agent", "Stop agent", id="dashboard.stop_agent", show=False,
                tooltip="Close the highlighted agent's pane; its worktree and branch stay"),
        Binding("e", "agent_diff", "Agent edits", id="dashboard.agent_diff", show=False,
                tooltip="The highlighted agent's uncommitted train.py diff"),
        Binding("v", "toggle_preview", "Pane preview", id="dashboard.preview", show=False),
    ]

    def __init__(self, ledger_path: Path, *, read_only: bool, poll_interval: float,
                 clock: Callable[[], float], watch: bool = False) -> None:
        """`watch`: watch the agents' worktrees (off for fixed-clock snapshots)."""
        super().__init__()
        self.ledger_path = ledger_path
        self.read_only = read_only
        self.watch_worktrees = watch
        self.clock = clock
        self.poller = LedgerPoller(ledger_path, read_only=read_only, interval=poll_interval)
        self.data: DashboardData | None = None
        self.plot: ProgressionPlot | None = None
        self.marked_id: int | None = None
        self._bindings_state: tuple | None = None
        self._no_ledger_text: Text | None = None

    @property
    def cockpit(self) -> CockpitApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="status-bar")
        yield GpuStrip(id="gpu-strip")
        yield Static(id="no-ledger")
        with Vertical(id="dashboard-body"):
            with Horizontal(id="top-row"):
                yield AgentsPanel(clock=self.clock, ledger_path=self.ledger_path, read_only=self.read_only,
                                  watch=self.watch_worktrees, id="agents-panel", classes="-empty")
                yield Container(id="progression")  # the plot is mounted after the first paint
            yield Input(placeholder="search description, hypothesis, agent (enter: back to "
                                    "the table, escape: clear)", id="search")
            yield Static(id="table-status")
            yield ExperimentsTable(id="experiments")
            yield Static(NO_EXPERIMENTS_TEXT, id="no-experiments")
            yield LiveView(id="live-view", classes="-idle")
        yield Footer()

    def on_mount(self) -> None:
        self._render_status_bar()
        self.query_one(ExperimentsTable).focus()
        self.call_after_refresh(self._after_first_paint)

    def _after_first_paint(self) -> None:
        """Start polling, and import plotting (slow to import) only once the frame is up."""
        from app.tui.widgets.progression_plot import ProgressionPlot

        slot = self.query_one("#progression")
        if not slot.is_attached:  # the app is already closing
            return
        self._poll_ledger()
        self.plot = ProgressionPlot()
        slot.mount(self.plot)
        if self.data is not None:
            self.plot.show(self.data.progression)

    @work(thread=True, exclusive=True, group="ledger-poll", exit_on_error=False)
    def _poll_ledger(self) -> None:
        worker = get_current_worker()
        self.poller.run(lambda: worker.is_cancelled, self.post_message)

    # -- data in --------------------------------------------------------------------------------

    @property
    def table(self) -> ExperimentsTable:
        return self.query_one(ExperimentsTable)

    @property
    def selected(self) -> Experiment | None:
        return self.table.selected

    def on_ledger_unavailable(self, message: LedgerUnavailable) -> None:
        missing = not self.ledger_path.exists()
        text = Text(sanitize(NO_LEDGER_TEXT.format(path=self.ledger_path) if missing
                             else BROKEN_LEDGER_TEXT.format(reason=message.reason)))
        if text != self._no_ledger_text:  # the poller repeats this twice a second
            self._no_ledger_text = text
            self.query_one("#no-ledger", Static).update(text)
        self.set_class(True, "-no-ledger")

    def on_ledger_changed(self, message: LedgerChanged) -> None:
        data = message.data
        self.data = data
        self.set_class(False, "-no-ledger")
        self.set_class(data.experiment_count == 0, "-no-experiments")
        places = data.gpus.places() if data.gpus else {}
        self.query_one(AgentsPanel).show(data.agents, places, agent_labels(data.attention))
        self.query_one(GpuStrip).show(data.gpus)
        self.table.show(data.rows, data.best, places)
        self.table.show_sort(data.query.sort)
        if self.plot is not None:
            self.plot.show(data.progression)
        self._update_follow()
        self.query_one(LiveView).show(data.follow)
        self._render_status_bar()
        self._render_table_status()
        self._refresh_bindings_if_changed()

    def _agents_focused(self) -> bool:
        focused = self.focused
        return focused is not None and focused.id == "agents-table"

    def on_descendant_focus(self) -> None:
        self._refresh_bindings_if_changed()

    def _refresh_bindings_if_changed(self) -> None:
        """Refresh the Footer only when what applies to the highlighted row changed (it recomposes)."""
        exp, agent = self.selected, self.agents_panel.selected
        state = (exp and (exp.id, actions_for(exp)),
                 self.marked_id, agent and (can_stop(agent), bool(agent.worktree)),
                 self._agents_focused())
        if state != self._bindings_state:
            self._bindings_state = state
            self.refresh_bindings()

    def _update_follow(self) -> None:
        """Follow the highlighted experiment if it is live, else keep the current one while it
        is live, else the newest live one; a finished one stays shown until another starts."""
        if self.data is None:
            return
        live_view = self.query_one(LiveView)
        live = {exp.id: exp for exp in self.data.live}
        selected = self.selected
        if selected is not None and selected.id in live:
            target = live[selected.id]
        elif live_view.exp_id in live:
            target = live[live_view.exp_id]
        elif live:
            running = [e for e in live.values() if e.status == "running"] or list(live.values())
            target = max(running, key=lambda e: e.id)
        else:
            return
        live_view.follow(target)
        if self.poller.query.follow_id != target.id:
            self.poller.set_query(replace(self.poller.query, follow_id=target.id))

    @on(DataTable.RowHighlighted, "#experiments")
    def _on_experiment_highlighted(self) -> None:
        self._update_follow()
        self._refresh_bindings_if_changed()

    @on(DataTable.RowSelected, "#experiments")
    def _on_experiment_selected(self) -> None:
        self.action_open()

    @on(DataTable.RowSelected, "#agents-table")
    def _on_agent_selected(self) -> None:
        self._with_agent(lambda name: self.cockpit.run_agent_flow("focus_agent", name))

    def on_agents_panel_agent_highlighted(self) -> None:
        self._refresh_bindings_if_changed()

    # -- status lines ---------------------------------------------------------------------------

    def _render_status_bar(self) -> None:
        text = header_text(self.data, self.ledger_path, self.read_only)
        self.query_one("#status-bar", Static).update(text, layout=False)  # fixed: one line

    def _render_table_status(self) -> None:
        if self.data is not None:
            text = table_status_text(self.data, self.marked_id)
            self.query_one("#table-status", Static).update(text, layout=False)  # fixed: one line

    # -- query changes --------------------------------------------------------------------------

    def _set_query(self, **changes: object) -> None:
        self.poller.set_query(replace(self.poller.query, **changes))  # type: ignore[arg-type]

    def action_cycle_sort(self) -> None:
        self._set_query(sort=_cycle(list(SORTS), self.poller.query.sort))

    def action_cycle_tag(self) -> None:
        tags = list(self.data.tags) if self.data else []
        self._set_query(tag=_cycle([None, *tags], self.poller.query.tag), plot_tag=None)

    def action_cycle_plot_tag(self) -> None:
        data = self.data
        if data is None or not data.tags:
            return
        shown = data.progression.tag if data.progression else None
        self._set_query(plot_tag=_cycle(list(data.tags), shown))

    def action_cycle_state(self) -> None:
        self._set_query(state=_cycle([None, *STATES], self.poller.query.state))

    def action_cycle_agent(self) -> None:
        names = list(self.data.agent_names) if self.data else []
        self._set_query(agent=_cycle([None, *names], self.poller.query.agent))

    def set_filter(self, **changes: object) -> None:
        """Set tag / agent / state / search / sort directly (the command palette uses this)."""
        self._set_query(**changes)

    def action_clear_filters(self) -> None:
        search = self.query_one("#search", Input)
        search.value = ""
        search.display = False
        self.table.focus()
        self._set_query(tag=None, agent=None, state=None, search="")

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.display = True  # on the widget, not a screen class: no restyle of the whole screen
        search.focus()

    @on(Input.Changed, "#search")
    def _on_search_changed(self, event: Input.Changed) -> None:
        self._set_query(search=event.value.strip())

    @on(Input.Submitted, "#search")
    def _on_search_submitted(self) -> None:
        self.table.focus()

    def action_toggle_plot(self) -> None:
        self.toggle_class("-plot-toggled")

    def action_toggle_preview(self) -> None:
        self.toggle_class("-preview-toggled")

    # -- actions on the highlighted experiment ---------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide what does not apply to the highlighted experiment, and every write when read-only;
        while the agents table has focus, keys act on agents, never on the experiments table."""
        if action in WRITE_ACTIONS and self.read_only:
            return False
        if action in ROW_KEYS and self._agents_focused():
            return False
        exp = self.selected
        if action in EXPERIMENT_ACTIONS:
            return action in actions_for(exp, read_only=self.read_only)
        if action == "mark":
            return exp is not None
        if action == "compare":
            return exp is not None and self.marked_id is not None and self.marked_id != exp.id
        if action == "stop_agent":
            return can_stop(self.agents_panel.selected)
        if action == "agent_diff":
            return bool(getattr(self.agents_panel.selected, "worktree", ""))
        return True

    def _with_selected(self, act: Callable[[int], None]) -> None:
        exp = self.selected
        if exp is None:
            self.notify("No experiment highlighted", severity="warning")
            return
        act(exp.id)

    def action_open(self) -> None:
        self._with_selected(self.cockpit.open_experiment)

    def action_kill(self) -> None:
        self._with_selected(lambda exp_id: self.cockpit.run_flow("kill", exp_id))

    def action_approve(self) -> None:
        self._with_selected(lambda exp_id: self.cockpit.run_flow("approve", exp_id))

    def action_reject(self) -> None:
        self._with_selected(lambda exp_id: self.cockpit.run_flow("reject", exp_id))

    def action_adopt(self) -> None:
        self._with_selected(lambda exp_id: self.cockpit.run_flow("adopt", exp_id))

    def action_note(self) -> None:
        self._with_selected(lambda exp_id: self.cockpit.run_flow("note", exp_id))

    def action_mark(self) -> None:
        self._with_selected(self.mark)

    def mark(self, exp_id: int | None) -> None:
        """Remember one experiment to compare with the next highlighted one (`c`)."""
        self.marked_id = None if exp_id == self.marked_id else exp_id
        self._render_table_status()
        self._refresh_bindings_if_changed()

    # -- actions on the highlighted agent --------------------------------------------------------

    @property
    def agents_panel(self) -> AgentsPanel:
        return self.query_one(AgentsPanel)

    def _with_agent(self, act: Callable[[str], None]) -> None:
        agent = self.agents_panel.selected
        if agent is None:
            self.notify("No agent highlighted", severity="warning")
            return
        act(agent.name)

    def action_new_agent(self) -> None:
        self.cockpit.run_agent_flow("new_agent", None)

    def action_stop_agent(self) -> None:
        self._with_agent(lambda name: self.cockpit.run_agent_flow("stop_agent", name))

    def action_agent_diff(self) -> None:
        self._with_agent(self.cockpit.show_agent_diff)

    def action_compare(self) -> None:
        exp = self.selected
        if self.marked_id is None or exp is None:
            self.notify("Mark an experiment with m, then highlight another and press c",
                        severity="warning")
            return
        self.cockpit.compare_experiments(self.marked_id, exp.id)

    def experiment(self, exp_id: int) -> Experiment | None:
        """The experiment as last loaded (table window or live rows), if the dashboard has it."""
        found = self.table.experiment(exp_id)
        if found is None and self.data is not None:
            found = next((e for e in self.data.live if e.id == exp_id), None)
        return found
