"""Agent actions as short flows: new (a form), stop (a confirmation), focus (its tmux pane) and
the diff of what it is changing (a modal).

Like app/tui/experiment_flows.py: each runs as an async worker so it can wait on modals; git, tmux and the
ledger are used in a thread; the outcome comes back as an `ActionFinished` message. Read-only
cockpits refuse every flow in AGENT_WRITE_ACTIONS (new and stop write the ledger; focus moves
someone's tmux around), whatever asked for it.
"""
from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from app.errors import CockpitError
from app.tui.messages import ActionFinished
from app.tui.screens.confirm import ConfirmModal
from app.tui.screens.new_agent import NewAgentModal

if TYPE_CHECKING:
    from app.config import Settings
    from app.tui.app import CockpitApp
    from app.tui.poller import AgentStatus

AGENT_WRITE_ACTIONS = frozenset({"new_agent", "stop_agent", "focus_agent"})
STOPPABLE_STATES = ("starting", "running", "exited")  # agents whose pane may still be open


def _core() -> SimpleNamespace:
    """The core modules, imported on first use (app.ledger.store is slow to import)."""
    from app import config, git
    from app.agents import lifecycle as agents
    from app.agents import panes
    from app.ledger import store as ledger

    return SimpleNamespace(agents=agents, config=config, git=git, ledger=ledger, panes=panes)


async def _in_thread(app: CockpitApp, action: str, work: Callable[[], Any]) -> Any:
    """`work()` in a thread; a refusal or failure is posted as the action's error (None returned)."""
    core = _core()
    try:
        return await asyncio.to_thread(work)
    except (CockpitError, *core.ledger.LEDGER_ERRORS, OSError) as exc:
        app.post_message(ActionFinished(action, None, error=str(exc)))
        return None


def tmux_socket(app: CockpitApp) -> str | None:
    """Where new agents' panes go: the app's private tmux server, else $COCKPIT_TMUX_SOCKET's."""
    return app.tmux_socket or os.environ.get(_core().agents.TMUX_SOCKET_ENV) or None


@dataclass(frozen=True)
class _Repository:
    main: Path
    settings: Settings
    default_tag: str


def _repository(app: CockpitApp) -> _Repository:
    """The main worktree of the repository holding the ledger (else of the working directory:
    `--ledger` elsewhere), and its settings."""
    core = _core()
    holder = next(p for p in app.ledger_path.absolute().parents if p.is_dir())  # ledger not made yet
    for start in (holder, Path.cwd()):
        try:
            main = core.git.main_worktree(start)
        except core.git.GitError:
            continue
        settings = app.settings or core.config.load_settings(main)
        return _Repository(main, settings, settings.tag or core.agents.default_tag())
    raise core.agents.AgentError(f"neither {holder} nor {Path.cwd()} is in a git "
                                 "repository: start the cockpit in the autoresearch repository")


async def new_agent(app: CockpitApp, _name: str | None = None) -> None:
    repo = await _in_thread(app, "agent new", lambda: _repository(app))
    if repo is None:
        return
    where = "beside this cockpit" if os.environ.get("TMUX") else "of a detached tmux session"
    form = await app.push_screen_wait(NewAgentModal(command=repo.settings.agent_command,
                                                    tag=repo.default_tag, where=where))
    if form is None:
        return
    core = _core()

    def create() -> Any:
        with core.ledger.Ledger(app.ledger_path) as ledger:  # the first agent may precede any run
            return core.agents.create_agent(
                ledger, repo.main, form.name, command=form.command or None, tag=form.tag or None,
                search=form.search, settings=repo.settings, socket=tmux_socket(app), actor="human")

    created = await _in_thread(app, "agent new", create)
    if created is not None:
        app.post_message(ActionFinished("agent new", None, outcome="\n".join(created.describe())))


async def stop_agent(app: CockpitApp, name: str) -> None:
    agent = app.agent_status(name)
    pane = f"its pane {agent.pane_id} closes" if agent and agent.pane_id else "its pane closes"
    body = f"{pane} and the agent's process ends"
    if agent and agent.running:
        body += (f"; its running experiment #{agent.running.id} is killed with it (the pane's "
                 "processes end)")
    body += (f". Its worktree {agent.worktree} and branch {agent.branch} stay." if agent
             else ". Its worktree and branch stay.")
    if not await app.push_screen_wait(ConfirmModal(f"Stop agent {name}?", body, confirm_label="Stop")):
        return
    core = _core()

    def stop() -> str:
        with core.ledger.Ledger(app.ledger_path, create=False) as ledger:
            return core.agents.stop_agent(ledger, name, actor="human")

    outcome = await _in_thread(app, "agent stop", stop)
    if outcome is not None:
        app.post_message(ActionFinished("agent stop", None, outcome=outcome))


async def focus_agent(app: CockpitApp, name: str) -> None:
    """Make the agent's pane the active one; outside its tmux server, say how to attach."""
    agent = app.agent_status(name)
    if agent is None or not agent.pane_id:
        state = agent.state if agent else "unknown"
        app.post_message(ActionFinished("agent focus", None, error=f"agent {name} has no tmux pane "
                                        f"({state}): nothing to focus"))
        return
    socket = agent.tmux_socket or None
    core = _core()

    def focus() -> Any:
        core.panes.select_pane(agent.pane_id, socket)
        return core.panes.pane_info(agent.pane_id, socket), core.panes.back_hint(socket)

    found = await _in_thread(app, "agent focus", focus)
    if found is None or found[0] is None:
        return
    pane, back = found
    if _inside_server(agent.tmux_socket):
        outcome = (f"agent {name}: pane {pane.pane_id} in session {pane.session} is the active "
                   f"pane; {back}")
    else:
        server = f"-L {agent.tmux_socket} " if agent.tmux_socket else ""
        outcome = (f"agent {name} runs in tmux session {pane.session} (pane {pane.pane_id}, now its "
                   f"active pane): attach with `tmux {server}attach -t {pane.session}`")
    app.post_message(ActionFinished("agent focus", None, outcome=outcome))


def _inside_server(socket: str) -> bool:
    """Whether this cockpit runs in a pane of the tmux server `socket` names ("" = default)."""
    tmux = os.environ.get("TMUX", "")
    return bool(tmux) and Path(tmux.split(",")[0]).name == (socket or "default")


FLOWS: dict[str, Callable[[CockpitApp, Any], Awaitable[None]]] = {
    "new_agent": new_agent, "stop_agent": stop_agent, "focus_agent": focus_agent,
}


def start(app: CockpitApp, action: str, name: str | None) -> None:
    """Run the flow for `action` on the agent `name` as an async worker (refused when read-only)."""
    if app.read_only and action in AGENT_WRITE_ACTIONS:
        app.notify(f"read-only cockpit: {action.replace('_', ' ')} is not available", severity="error")
        return
    app.run_worker(FLOWS[action](app, name), name=f"{action} {name or ''}".strip(),
                   group="agent-actions", exit_on_error=False)


def can_stop(agent: AgentStatus | None) -> bool:
    return agent is not None and bool(agent.worktree) and agent.state in STOPPABLE_STATES
