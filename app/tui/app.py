"""The cockpit app: a factory, app-wide keys, screen pushes and the command palette hookup.

Usage:
    app = make_app(Path(".autoresearch/ledger.db"), read_only=True)
    app.run()
    make_app(None, log_file=Path("run.log")).run()   # `cockpit log FILE`: the log viewer alone
"""
from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from app.corefiles import styles_dir
from app.logs.textsafe import sanitize
from app.tui import agent_flows, experiment_flows
from app.tui.messages import ActionFinished, LedgerChanged
from app.tui.palette import CockpitCommands
from app.tui.screens.dashboard import DashboardScreen
from app.tui.screens.help import HelpScreen, HelpSection
from app.tui.widgets.experiments_table import LEGEND, one_line
from app.tui.widgets.row_table import RowTable

if TYPE_CHECKING:
    from app.config import Settings
    from app.supervisor.attention import AttentionItem
    from app.tui.poller import AgentStatus

STYLES = styles_dir()  # absolute: any cwd, a checkout or an installed wheel
STYLE_FILES = ("app.tcss", "detail.tcss", "gpus.tcss")
AGENT_TABLE_KEYS = [Binding("enter", "focus_agent", "Go to the agent's tmux pane"),
                    Binding("tab", "focus_next", "Between the agents and experiments tables")]


class CockpitApp(App[None]):
    """Keeps no experiment state itself: the dashboard owns the data, flows live in experiment_flows.py."""

    TITLE = "autoresearch cockpit"
    CSS_PATH = [STYLES / name for name in STYLE_FILES]
    COMMANDS = App.COMMANDS | {CockpitCommands}
    COMMAND_PALETTE_BINDING = "ctrl+p"
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help", key_display="?"),
        Binding("exclamation_mark", "attention", "Attention", id="app.attention", key_display="!",
                tooltip="What needs you: reviews, agents waiting or stuck, crashes, new bests"),
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("u", "undo", "Undo", id="app.undo", tooltip="Take back an approval before it is written"),
    ]

    def __init__(self, ledger_path: Path | None, *, read_only: bool = False,
                 settings: Settings | None = None, poll_interval: float = 0.1,
                 clock: Callable[[], float] | None = None, tmux_socket: str | None = None,
                 watch: bool | None = None, quit_question: str = "",
                 on_quit: Callable[[bool], None] | None = None, log_file: Path | None = None,
                 follow: bool = False) -> None:
        super().__init__()
        self.log_file = log_file
        self.follow = follow
        self.quit_question = quit_question
        self.on_quit = on_quit
        self.ledger_path = Path(ledger_path or "")  # unused when showing a log file
        self.read_only = read_only
        self.settings = settings
        self.poll_interval = poll_interval
        self.clock = clock or time.time
        self.tmux_socket = tmux_socket
        self.watch_worktrees = clock is None if watch is None else watch
        self.dashboard: DashboardScreen | None = None
        self._attention_count = 0  # items that needed the human at the last ledger change
        self.pending_undo: tuple[str, asyncio.Event] | None = None  # (what, set to undo it)
        if read_only:
            self.sub_title = "read-only"

    def get_default_screen(self) -> Screen:
        if self.log_file is not None:
            from app.tui.screens.log import LogScreen

            self.sub_title = "log viewer"
            return LogScreen(self.log_file, follow=self.follow)
        self.dashboard = DashboardScreen(self.ledger_path, read_only=self.read_only,
                                         poll_interval=self.poll_interval, clock=self.clock,
                                         watch=self.watch_worktrees)
        self.dashboard.poller.configure(self.settings, self.clock)
        return self.dashboard

    # -- what screens and the palette call ------------------------------------------------------

    def action_attention(self) -> None:
        """List what needs the human; the chosen item opens its experiment or highlights its agent."""
        from app.tui.screens.attention import AttentionModal

        items = self.dashboard.data.attention if self.dashboard and self.dashboard.data else ()
        if not items:
            self.notify("nothing needs you")
            return
        self.push_screen(AttentionModal(items), self._go_to)

    def _go_to(self, item: AttentionItem | None) -> None:
        if item is None:
            return
        if item.experiment_id is not None:
            self.open_experiment(item.experiment_id)
        elif item.agent and self.dashboard is not None:
            self.dashboard.agents_panel.highlight(item.agent)
        elif item.kind == "supervisor" and not self.read_only:
            self.run_worker(self._start_supervisor, thread=True, group="supervisor", exclusive=True)

    def _start_supervisor(self) -> None:
        """The attention list's supervisor item, chosen: start one in the background."""
        from app.supervisor import process

        pid = process.ensure_running(self.ledger_path, process.home_of(self.ledger_path), wait=True,
                                     asked=True)
        if pid:
            self.post_message(ActionFinished("supervisor", None, outcome=f"supervisor runs (pid {pid})"))
        else:
            log = process.log_path(self.ledger_path)
            self.post_message(ActionFinished("supervisor", None, error=f"it did not start: see {log}"))

    def on_ledger_changed(self, message: LedgerChanged) -> None:
        """(Bubbled up from the dashboard.) More needs the human than before: ring the terminal
        bell if the settings ask for it."""
        count = len(message.data.attention)
        if self._attention_count and count > self._attention_count and self.settings and self.settings.bell:
            self.bell()
        self._attention_count = count

    def run_flow(self, action: str, exp_id: int | None) -> None:
        """kill / approve / reject / adopt / note: confirm if needed, write, notify."""
        experiment_flows.start(self, action, exp_id)

    def run_agent_flow(self, action: str, name: str | None) -> None:
        """new_agent / stop_agent / focus_agent: ask if needed, act, notify."""
        agent_flows.start(self, action, name)

    def agent_status(self, name: str) -> AgentStatus | None:
        """The agent as the dashboard last showed it."""
        return self.dashboard.agents_panel.agent(name) if self.dashboard else None

    def show_agent_diff(self, name: str) -> None:
        from app.tui.screens.agent_diff import AgentDiffModal

        agent = self.agent_status(name)
        if agent is None or not agent.worktree:
            self.notify(f"agent {name} has no worktree to diff", severity="warning", markup=False)
            return
        self.push_screen(AgentDiffModal(agent.name, agent.worktree))

    def open_experiment(self, exp_id: int) -> None:
        from app.tui.screens.detail import DetailScreen  # imported when first needed: startup

        self.push_screen(DetailScreen(self.ledger_path, exp_id, self.read_only))

    def compare_experiments(self, id_a: int, id_b: int) -> None:
        from app.tui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(self.ledger_path, id_a, id_b))

    def experiment_summary(self, exp_id: int | None) -> str:
        """One line for dialogs: agent and description, as far as the dashboard knows them."""
        exp = self.dashboard.experiment(exp_id) if self.dashboard and exp_id else None
        if exp is None:
            return f"#{exp_id}"
        return f"#{exp.id} · {one_line(exp.agent) or '?'} · {one_line(exp.description)}"

    async def action_quit(self) -> None:
        """Quit; when the cockpit started processes (the demo), first ask whether to stop them."""
        if not (self.quit_question and self.on_quit):
            self.exit()
            return
        from app.tui.screens.quit import QuitModal

        def answered(stop: bool | None) -> None:
            if stop is not None:
                self.notify("stopping the demo's agents and runs…" if stop else "leaving them running")
                self.run_worker(partial(self._quit_after, stop), thread=True, group="quit")

        self.push_screen(QuitModal(self.quit_question), answered)

    def _quit_after(self, stop: bool) -> None:
        if self.on_quit is not None:
            self.on_quit(stop)
        self.call_from_thread(self.exit)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "undo":
            return self.pending_undo is not None
        if action == "attention":  # the log viewer alone (`cockpit log FILE`) has no ledger
            return self.log_file is None
        return True

    def action_undo(self) -> None:
        if self.pending_undo is not None:
            self.pending_undo[1].set()

    def action_help(self) -> None:
        from app.tui.screens.compare import CompareScreen
        from app.tui.screens.detail import DetailScreen
        from app.tui.widgets.log_viewer import LogView, LogViewer

        log_keys: HelpSection = ("Log viewer (detail screen, cockpit log)",
                                 [*LogView.BINDINGS, *LogViewer.BINDINGS])
        sections: list[HelpSection] = [log_keys, ("Everywhere", self._global_bindings())]
        if self.log_file is None:
            sections = [
                ("Dashboard", DashboardScreen.BINDINGS), ("Agents table", AGENT_TABLE_KEYS),
                ("Both tables", RowTable.BINDINGS),
                ("Everywhere", self._global_bindings()),
                ("Experiment detail", DetailScreen.BINDINGS), log_keys,
                ("Compare", CompareScreen.BINDINGS)]
        example = "log: first traceback" if self.log_file else "experiment: kill #12"
        hidden = experiment_flows.WRITE_ACTIONS if self.read_only else frozenset()
        self.push_screen(HelpScreen(sections, hidden=hidden, legend=LEGEND,
                                    footer="Every action is also in the command palette (ctrl+p), "
                                           f"e.g. \"{example}\"."))

    def _global_bindings(self) -> list[BindingType]:
        return [*self.BINDINGS,
                Binding(self.COMMAND_PALETTE_BINDING, "command_palette", "Command palette")]

    # -- outcomes -------------------------------------------------------------------------------

    def on_action_finished(self, message: ActionFinished) -> None:
        if message.error:
            self.notify(sanitize(message.error), title=f"{message.action} failed",
                        severity="error", markup=False)
        else:
            self.notify(sanitize(message.outcome), title=message.action, markup=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that died of an unexpected error says so instead of failing silently."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(sanitize(f"{type(error).__name__}: {error}"),
                        title=f"{event.worker.name or 'background task'} failed",
                        severity="error", markup=False, timeout=15)


def make_app(ledger_path: Path | None, *, read_only: bool = False, settings: Settings | None = None,
             poll_interval: float = 0.1, clock: Callable[[], float] | None = None,
             tmux_socket: str | None = None, watch: bool | None = None,
             quit_question: str = "", on_quit: Callable[[bool], None] | None = None,
             log_file: Path | None = None, follow: bool = False) -> CockpitApp:
    """The one way to build the app: the CLI and every test call this.

    `clock` fixes "now" for displays (tests, snapshots); a fixed clock also turns off (unless
    `watch` says otherwise) the watching of the agents' worktrees. The app records nothing by
    itself: the supervisor (app/supervisor/) does, whether or not a cockpit is open. `tmux_socket` names
    the tmux server (-L) new agents' panes open on (default: $COCKPIT_TMUX_SOCKET, else the
    cockpit's own server). `quit_question` + `on_quit(stop)`: asked on quit, e.g. by the demo,
    whether to stop what it started; `on_quit` runs in a thread before the app exits. `log_file`:
    show only the log viewer on that file (`cockpit log FILE`; no ledger), following it if `follow`."""
    return CockpitApp(ledger_path, read_only=read_only, settings=settings,
                      poll_interval=poll_interval, clock=clock, tmux_socket=tmux_socket, watch=watch,
                      quit_question=quit_question, on_quit=on_quit, log_file=log_file, follow=follow)
