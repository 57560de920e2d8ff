"""Command palette entries: every dashboard action as text, e.g. "experiment: kill #12",
"agent: stop alice".

Built from what the dashboard currently shows (its table window and live rows), so only actions
that apply are offered; read-only cockpits get no writing commands. Typing a number offers
"experiment: open #N" even for an experiment outside the table window. Tag and agent names are
untrusted: the palette parses markup, so everything shown is escaped or a plain `Text`.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from functools import partial
from typing import TYPE_CHECKING, NamedTuple

from rich.text import Text
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.markup import escape

from app.ledger.dashboard import SORTS
from app.ledger.records import Experiment
from app.ledger.vocabulary import EXPERIMENT_ACTIONS, STATES, actions_for
from app.tui.agent_flows import can_stop
from app.tui.widgets.experiments_table import one_line, state_label

if TYPE_CHECKING:
    from textual.screen import Screen

    from app.tui.app import CockpitApp
    from app.tui.screens.dashboard import DashboardScreen

DISCOVER_EXPERIMENTS = 5  # experiments offered before anything is typed (highlighted one first)
_NUMBER = re.compile(r"#?(\d+)")


class Command(NamedTuple):
    text: str
    run: Callable[[], object]
    help: str = ""


def _experiment_help(exp: Experiment) -> str:
    return escape(f"{state_label(exp)} · {one_line(exp.agent)} · {one_line(exp.description)}")


def experiment_commands(app: CockpitApp, exp: Experiment) -> Iterator[Command]:
    """What can be done to one experiment, as palette commands."""
    about = _experiment_help(exp)
    applies = actions_for(exp, read_only=app.read_only)
    for action in EXPERIMENT_ACTIONS:
        if action in applies:
            run = (partial(app.open_experiment, exp.id) if action == "open"
                   else partial(app.run_flow, action, exp.id))
            yield Command(f"experiment: {action} #{exp.id}", run, about)


def agent_commands(app: CockpitApp, dashboard: DashboardScreen) -> Iterator[Command]:
    """New agent, and for each agent: focus its pane, stop it, see what it is changing."""
    flow = app.run_agent_flow
    if not app.read_only:
        yield Command("agent: new", partial(flow, "new_agent", None),
                      "a worktree, a branch and a tmux pane beside the cockpit")
    for agent in dashboard.agents_panel.agents:
        name = one_line(agent.name)
        about = escape(f"{one_line(agent.state)} · {one_line(agent.branch)}")
        if agent.pane_id and not app.read_only:
            yield Command(f"agent: focus {name}", partial(flow, "focus_agent", agent.name), about)
        if can_stop(agent) and not app.read_only:
            yield Command(f"agent: stop {name}", partial(flow, "stop_agent", agent.name), about)
        if agent.worktree:
            yield Command(f"agent: diff {name}", partial(app.show_agent_diff, agent.name),
                          "its uncommitted train.py edits")


def view_commands(app: CockpitApp, dashboard: DashboardScreen) -> Iterator[Command]:
    if app.pending_undo is not None:
        yield Command(f"undo: {app.pending_undo[0]}", app.action_undo, "before it is written")
    yield Command("view: help", app.action_help, "every key")
    yield Command("view: attention", app.action_attention,
                  "what needs you: reviews, agents waiting or stuck, crashes, new bests")
    yield Command("view: toggle plot", dashboard.action_toggle_plot, "show or hide the progression")
    selected, marked = dashboard.selected, dashboard.marked_id
    if selected is not None and marked is not None and marked != selected.id:
        yield Command(f"view: compare #{marked} with #{selected.id}",
                      partial(app.compare_experiments, marked, selected.id), "metrics and diff")
    if selected is not None:
        yield Command(f"view: mark #{selected.id} for compare", partial(dashboard.mark, selected.id),
                      "then highlight another and press c")
    data = dashboard.data
    set_filter = dashboard.set_filter
    yield Command("filter: clear", dashboard.action_clear_filters, "all tags, agents, decisions")
    for tag in data.tags if data else ():
        yield Command(f"view: tag {one_line(tag)}", partial(set_filter, tag=tag, plot_tag=None),
                      "table and progression plot")
        yield Command(f"view: plot tag {one_line(tag)}", partial(set_filter, plot_tag=tag),
                      "the progression plot and the header's best only")
    for name in data.agent_names if data else ():
        yield Command(f"filter: agent {one_line(name)}", partial(set_filter, agent=name))
    for state in STATES:
        yield Command(f"filter: decision {state}", partial(set_filter, state=state))
    for sort in SORTS:
        yield Command(f"sort: by {sort}", partial(set_filter, sort=sort))
    if not app.read_only:
        yield Command("note: general note", partial(app.run_flow, "note", None), "not about one run")


LOG_COMMANDS = (  # (text, LogViewer or LogView action, help)
    ("log: search", "search", "search the log (/)"), ("log: next match", "find(1)", "n"),
    ("log: previous match", "find(-1)", "N"), ("log: go to line", "go_to_line", ":"),
    ("log: first traceback", "traceback", "t"),
    ("log: toggle every \\r step", "view.toggle_steps", "x: each progress step as a row"),
    ("log: toggle wrap", "view.toggle('wrap')", "w"), ("log: toggle follow", "view.toggle_follow", "f"),
    ("log: end", "view.scroll_end", "G / End"), ("log: top", "view.scroll_home", "g / Home"),
    ("log: clear search", "close_search", "Esc"))


def log_commands(screen: Screen) -> Iterator[Command]:
    """The log viewer's actions, when the screen the palette was opened on shows one."""
    from app.tui.widgets.log_viewer import LogViewer

    viewers = screen.query(LogViewer)
    if not viewers:
        return
    viewer = viewers.first()
    for text, action, about in LOG_COMMANDS:
        target, _, name = action.rpartition(".")
        node = viewer.view if target else viewer
        yield Command(text, partial(node.run_action, name), escape(about))


class CockpitCommands(Provider):
    """Experiment actions, views, filters and sorts for the command palette."""

    @property
    def cockpit(self) -> CockpitApp:
        return self.app  # type: ignore[return-value]

    def _experiments(self, digits: str | None) -> list[Experiment]:
        dashboard = self.cockpit.dashboard
        if dashboard is None or dashboard.data is None:
            return []
        selected = dashboard.selected
        seen: dict[int, Experiment] = {selected.id: selected} if selected else {}
        for exp in (*dashboard.data.live, *dashboard.data.rows):
            seen.setdefault(exp.id, exp)
        return [e for e in seen.values() if digits is None or digits in str(e.id)]

    def _commands(self, query: str) -> Iterator[Command]:
        number = _NUMBER.search(query)
        digits = number.group(1) if number else None
        experiments = self._experiments(digits)
        for exp in experiments:
            yield from experiment_commands(self.cockpit, exp)
        if digits is not None and not any(str(e.id) == digits for e in experiments):
            yield Command(f"experiment: open #{int(digits)}",
                          partial(self.cockpit.open_experiment, int(digits)))
        yield from log_commands(self.screen)
        if self.cockpit.dashboard is not None:
            yield from agent_commands(self.cockpit, self.cockpit.dashboard)
            yield from view_commands(self.cockpit, self.cockpit.dashboard)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands(query):
            score = matcher.match(command.text)
            if score > 0:
                yield Hit(score, matcher.highlight(escape(command.text)), command.run, text=command.text,
                          help=command.help or None)

    async def discover(self) -> Hits:
        for command in log_commands(self.screen):
            yield DiscoveryHit(Text(command.text), command.run, text=command.text, help=command.help)
        experiments = self._experiments(None)[:DISCOVER_EXPERIMENTS]
        for exp in experiments:
            for command in experiment_commands(self.cockpit, exp):
                yield DiscoveryHit(Text(command.text), command.run, text=command.text,
                                   help=command.help or None)
        if self.cockpit.dashboard is not None:
            dashboard = self.cockpit.dashboard
            commands = (*agent_commands(self.cockpit, dashboard), *view_commands(self.cockpit, dashboard))
            for command in commands:
                yield DiscoveryHit(Text(command.text), command.run, text=command.text,
                                   help=command.help or None)
