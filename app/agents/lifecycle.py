"""Agents: a git worktree and branch per agent, its command in a tmux pane beside the cockpit.

Usage:
    created = create_agent(ledger, main, "ada", tag="nov22")  # worktree, branch, ledger row, pane
    for status in agent_statuses(ledger): ...                  # states refreshed, last experiment
    stop_agent(ledger, "ada"); remove_agent(ledger, "ada")

Inside tmux ($TMUX) the agent's pane splits the current window (a new window when it is full);
outside, a detached session `cockpit-<repo>` is created whose first pane runs the cockpit.
Agent states: starting -> running -> stopped (by a human) | exited (its process ended by itself)
| gone (its worktree was deleted behind our back) | removed. Each change is an `agent-*` event.
A pane is recognised by its pid and that process's start time, so a recycled pane id or pid is
never taken for the agent's.
"""
from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app import git
from app.agents import panes
from app.agents.kickoff import (
    Launch,
    LaunchError,
    agent_env,
    cockpit_bin_dir,
    kickoff_text,
    pane_argv,
    resolve_launch,
    write_kickoff,
)
from app.config import Settings, load_settings
from app.errors import UsageError
from app.ledger.store import Agent, Experiment, Ledger
from app.run.procs import process_identity, same_process, stop_if_same

TMUX_SOCKET_ENV = "COCKPIT_TMUX_SOCKET"  # a private tmux server (-L name) for agents' panes
WORKTREES_DIR = Path(".autoresearch") / "worktrees"  # default home of agent worktrees, under main
SESSION_SIZE = (200, 50)  # columns, rows of a detached session until a client attaches
RECORDED_ARTIFACTS = ("run.log", "results.tsv")  # untracked, but in the ledger once synced
STOP_GRACE_S = 5.0  # an agent that outlives its pane gets TERM, then KILL after this long
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,39}")  # safe in a branch, a folder and tmux
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


class AgentError(UsageError):
    """An agent operation that cannot be done; the message is one line for the human."""


@dataclass(frozen=True)
class CreatedAgent:
    agent: Agent
    launch: Launch
    kickoff: Path
    session: str
    inside_tmux: bool
    new_window: bool  # the window beside the cockpit was full
    base: str  # the commit the worktree starts at: main's head, or the reused branch's
    reused: bool = False  # an earlier agent's branch of this name and tag, continued
    back: str = ""  # how to get from the agent's pane back to the cockpit

    def describe(self) -> list[str]:
        a = self.agent
        origin = f"continuing the branch at {self.base[:7]}" if self.reused else f"from main {self.base[:7]}"
        lines = [f"agent {a.name}: worktree {a.worktree} on branch {a.branch} ({origin})"]
        if self.launch.fallback:
            lines.append(f"{self.launch.fallback}; the kickoff prompt is in {self.kickoff}")
        where = "a new window" if self.new_window else "a split beside the cockpit"
        lines.append(f"started `{self.launch.display}` in tmux pane {a.pane_id} ({where}, pid {a.pid})")
        if self.back:
            lines.append(self.back)
        if not self.inside_tmux:
            server = f"-L {a.tmux_socket} " if a.tmux_socket else ""
            lines.append(f"detached tmux session {self.session}: attach with "
                         f"`tmux {server}attach -t {self.session}`")
        return lines


@dataclass(frozen=True)
class AgentStatus:
    agent: Agent
    alive: bool  # its pane's process still runs
    last: Experiment | None  # its newest experiment

    def as_dict(self) -> dict[str, Any]:
        a, last = self.agent, self.last
        return {"name": a.name, "state": a.state, "kind": a.kind, "branch": a.branch,
                "tag": a.tag, "worktree": a.worktree, "command": a.command, "pane_id": a.pane_id,
                "pane_alive": self.alive, "tmux_socket": a.tmux_socket, "pid": a.pid,
                "last_experiment": None if last is None else {
                    "id": last.id, "decision": last.effective_decision, "val_bpb": last.val_bpb,
                    "description": last.description}}


# ---------------------------------------------------------------------------
# Names

def validate_name(name: str) -> str:
    if not _NAME.fullmatch(name or ""):
        raise AgentError(f"agent name {name!r} is not usable: 1-40 letters, digits, '-' or '_', "
                         "starting with a letter or digit")
    return name


def validate_tag(tag: str) -> str:
    if not _NAME.fullmatch(tag or ""):
        raise AgentError(f"tag {tag!r} is not usable: 1-40 letters, digits, '-' or '_'")
    return tag


def default_tag(now: float | None = None) -> str:
    """Today's date the way autoresearch names its runs: `nov22`, `mar5`."""
    day = time.localtime(now)
    return f"{_MONTHS[day.tm_mon - 1]}{day.tm_mday}"


def session_name(main: Path) -> str:
    """The detached session for one repository's cockpit."""
    return "cockpit-" + (re.sub(r"[^A-Za-z0-9_-]", "_", main.name) or "repo")


# ---------------------------------------------------------------------------
# Creating

def create_agent(ledger: Ledger, main: Path, name: str, *, command: str | None = None,
                 tag: str | None = None, search: bool = False, settings: Settings | None = None,
                 worktree: Path | None = None, socket: str | None = None,
                 session: str | None = None, cockpit_command: panes.Command = None,
                 actor: str = "cli") -> CreatedAgent:
    """Worktree + branch from main, ledger row, and the agent's command running in a tmux pane.

    `socket` names a private tmux server; `cockpit_command` replaces the cockpit in the first
    pane of a new detached session (tests).
    """
    name = validate_name(name)
    try:
        main = git.main_worktree(main)
    except git.GitError as exc:
        raise AgentError(str(exc)) from exc
    settings = settings or load_settings(main)
    tag = validate_tag(tag or settings.tag or default_tag())
    existing = ledger.get_agent(name)
    if existing and existing.state != "removed":
        raise AgentError(f"agent {name} already exists ({existing.state}, {existing.worktree}): "
                         f"pick another name, or `cockpit agent remove {name}` first")
    branch = f"autoresearch/{tag}-{name}"
    target = Path(worktree) if worktree else main / WORKTREES_DIR / name
    target = (target if target.is_absolute() else main / target).resolve()
    ledger_path = ledger.path.resolve()
    prompt = kickoff_text(name, tag, branch, target, ledger_path)
    try:
        launch = resolve_launch(command or settings.agent_command, prompt, search=search)
        # a removed agent re-created under the same tag continues its branch, which remove keeps
        reuse = bool(existing and existing.branch == branch and git.branch_exists(main, branch))
        base = git.rev_parse(main, branch) if reuse else git.head_sha(main)
        git.add_worktree(main, target, branch, reuse_branch=reuse)
    except (LaunchError, git.GitError) as exc:
        hint = " (another --tag gives a new branch)" if "already exists" in str(exc) else ""
        raise AgentError(f"{exc}{hint}") from exc
    kickoff = write_kickoff(target, prompt)
    ledger.upsert_agent(name, actor=actor, event="agent-new", tag=tag, branch=branch,
                        worktree=str(target), command=launch.display, kind=launch.kind,
                        state="starting", pane_id="", tmux_socket="", pid=None, pid_start=None)
    env = agent_env(name, tag, ledger_path, target, kickoff)
    try:
        inside, session, pane, anchor = _open_pane(launch, target, env, name, socket, main,
                                                   session or session_name(main), cockpit_command,
                                                   ledger_path)
    except (panes.PaneError, AgentError) as exc:
        _undo_worktree(main, target, None if reuse else branch)
        ledger.upsert_agent(name, actor=actor, state="removed")
        ledger.event("agent-failed", agent=name, actor=actor, error=str(exc))
        undone = "its worktree was" if reuse else "its worktree and branch were"
        raise AgentError(f"could not start agent {name} ({exc}); {undone} removed again") from exc
    ledger.upsert_agent(name, actor=actor, event="agent-start", state="running",
                        pane_id=pane.pane_id, tmux_socket=_server_name(socket, inside),
                        pid=pane.pid, pid_start=process_identity(pane.pid))
    agent = ledger.get_agent(name)
    assert agent is not None
    return CreatedAgent(agent, launch, kickoff, session, inside,
                        new_window=pane.window_id != anchor.window_id, base=base, reused=reuse,
                        back=panes.back_hint(socket))


def _open_pane(launch: Launch, worktree: Path, env: dict[str, str], name: str,
               socket: str | None, main: Path, session: str, cockpit_command: panes.Command,
               ledger_path: Path) -> tuple[bool, str, panes.Pane, panes.Pane]:
    """(inside tmux?, session, the agent's pane, the pane it was opened beside)."""
    here = _current_pane(socket)
    if here is not None:
        anchor = panes.pane_info(here, socket)
    else:
        cockpit_env = {k: v for k, v in env.items() if k in ("PATH", "PYTHONPATH", "COCKPIT_LEDGER")}
        anchor = panes.ensure_session(session, cockpit_command or cockpit_pane_command(ledger_path),
                                      main, cockpit_env, title="cockpit",
                                      size=SESSION_SIZE, socket=socket)
    assert anchor is not None
    pane_id = panes.split_pane(anchor.pane_id, pane_argv(launch, env["PATH"]), worktree, env,
                               title=f"agent {name}", agent=name, socket=socket)
    pane = panes.pane_info(pane_id, socket)
    if pane is None or pane.dead:
        raise AgentError(f"`{launch.display}` exited as soon as it started")
    return here is not None, anchor.session, pane, anchor


def _current_pane(socket: str | None) -> str | None:
    """This process's tmux pane, if it runs inside tmux on the server `socket` names."""
    pane, tmux = os.environ.get("TMUX_PANE"), os.environ.get("TMUX")
    if not pane or not tmux:
        return None
    if socket and Path(tmux.split(",")[0]).name != socket:
        return None
    return pane if panes.pane_info(pane, socket) is not None else None


def _server_name(socket: str | None, inside: bool) -> str:
    """The -L name of the server the pane is on; "" for the default server."""
    if socket:
        return socket
    if inside:
        name = Path(os.environ.get("TMUX", "").split(",")[0]).name
        return "" if name == "default" else name
    return ""


def cockpit_pane_command(ledger_path: Path) -> str:
    """The cockpit TUI on this ledger; a shell stays in the pane if it exits, to restart it."""
    exe = cockpit_bin_dir() / "cockpit"
    argv = [str(exe)] if exe.is_file() else [sys.executable, "-m", "app.cli"]
    cmd = shlex.join([*argv, "--ledger", str(ledger_path)])
    note = shlex.quote(f"cockpit exited; restart it with: {cmd}")
    return f'{cmd}; printf "%s\\n" {note}; exec "${{SHELL:-/bin/sh}}"'


def _undo_worktree(main: Path, worktree: Path, branch: str | None) -> None:
    """Take back a worktree just created, and its branch unless it existed before."""
    with contextlib.suppress(git.GitError):
        git.remove_worktree(main, worktree, force=True)
    if branch:
        git.delete_branch(main, branch)


# ---------------------------------------------------------------------------
# Listing and states

def get_agent(ledger: Ledger, name: str) -> Agent:
    agent = ledger.get_agent(name)
    if agent is None:
        known = ", ".join(a.name for a in ledger.agents()) or "none"
        raise AgentError(f"no agent named {name!r} (agents: {known})")
    return agent


def is_alive(agent: Agent) -> bool:
    """Whether the process the agent's pane started still runs (no tmux call needed)."""
    return same_process(agent.pid, agent.pid_start)


def refresh_agent(ledger: Ledger, agent: Agent, actor: str = "cockpit") -> Agent:
    """Notice a deleted worktree (gone) or an agent process that ended by itself (exited)."""
    if agent.state in ("removed", "gone"):
        return agent
    state = agent.state
    if agent.worktree and not Path(agent.worktree).is_dir():
        state = "gone"
    elif agent.state == "running" and not is_alive(agent):
        state = "exited"
    if state == agent.state:
        return agent
    if ledger.read_only:
        return replace(agent, state=state)
    if ledger.upsert_agent(agent.name, actor=actor, event=f"agent-{state}", state=state,
                           expect_state=agent.state):
        return replace(agent, state=state)
    return ledger.get_agent(agent.name) or agent  # a human stopped or removed it meanwhile


def agent_statuses(ledger: Ledger, include_removed: bool = False) -> list[AgentStatus]:
    out = []
    for agent in ledger.agents():
        if agent.state == "removed" and not include_removed:
            continue
        agent = refresh_agent(ledger, agent)
        last = ledger.experiments(agent=agent.name, newest_first=True, limit=1)
        out.append(AgentStatus(agent, is_alive(agent), last[0] if last else None))
    return out


# ---------------------------------------------------------------------------
# Stopping and removing

def _close_pane(agent: Agent, socket: str | None) -> bool:
    """Close the agent's pane (only if it still holds the agent's process); True if it ran."""
    was_alive = is_alive(agent)
    server = socket if socket is not None else (agent.tmux_socket or None)
    if agent.pane_id:
        pane = panes.pane_info(agent.pane_id, server)
        if pane is not None and pane.pid == agent.pid:
            panes.kill_pane(agent.pane_id, server)
    if is_alive(agent):  # something ignored the hangup
        stop_if_same(agent.pid, agent.pid_start, STOP_GRACE_S)
    return was_alive


def stop_agent(ledger: Ledger, name: str, *, actor: str = "cli", socket: str | None = None) -> str:
    """Close the agent's pane; its worktree and branch stay."""
    agent = get_agent(ledger, name)
    if agent.state == "removed":
        raise AgentError(f"agent {name} was removed")
    running = [e.id for e in ledger.live() if e.agent == name]
    ran = _close_pane(agent, socket)
    state = "gone" if agent.worktree and not Path(agent.worktree).is_dir() else "stopped"
    ledger.upsert_agent(name, actor=actor, event="agent-stop", state=state, pane_id="")
    what = f"stopped (pane {agent.pane_id} closed)" if ran else "was not running; marked stopped"
    if ran and running:
        what += "; its running experiment " + ", ".join(f"#{i}" for i in running) + " ends with it"
    return f"agent {name} {what}; its worktree {agent.worktree} and branch {agent.branch} stay"


def remove_agent(ledger: Ledger, name: str, *, delete_branch: bool = False, actor: str = "cli",
                 socket: str | None = None) -> str:
    """Stop the agent and remove its worktree, refusing while it holds uncommitted work."""
    from app.observe.worktrees import sync_worktree

    agent = get_agent(ledger, name)
    if agent.state == "removed":
        raise AgentError(f"agent {name} is already removed")
    worktree = Path(agent.worktree)
    running = [e for e in ledger.live() if (e.agent == name or e.worktree == agent.worktree)
               and (e.backend != "observed" or same_process(e.runner_pid, e.runner_start))]
    if running:
        raise AgentError(f"experiment #{running[0].id} is running in agent {name}'s worktree: "
                         f"kill it or let it finish first; nothing was removed")
    main = main_worktree_of(ledger, worktree)
    artifacts: list[str] = []
    if worktree.is_dir():
        sync_worktree(ledger, worktree, agent=name)
        pending = git.dirty_files(worktree, untracked=True)
        artifacts = [f for f in pending if f in RECORDED_ARTIFACTS]
        others = [f for f in pending if f not in RECORDED_ARTIFACTS]
        if others:
            shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
            raise AgentError(f"agent {name}'s worktree {worktree} has uncommitted work ({shown}): "
                             "commit or discard it first; nothing was removed")
    _close_pane(agent, socket)
    lines = [f"agent {name} removed"]
    if worktree.is_dir():
        sync_worktree(ledger, worktree, agent=name)
        if main is None:
            raise AgentError(f"{worktree} is not a git worktree any more; nothing was removed")
        try:
            git.remove_worktree(main, worktree, force=bool(artifacts))
        except git.GitError as exc:
            raise AgentError(f"could not remove {worktree}: {exc}") from exc
        lines.append(f"worktree {worktree} deleted" + (
            f" (its {', '.join(artifacts)} already recorded in the ledger)" if artifacts else ""))
    else:
        if main is not None:
            with contextlib.suppress(git.GitError):
                git.remove_worktree(main, worktree)  # prunes git's record of it
        lines.append(f"worktree {worktree} was already gone")
    branch_deleted = False
    if delete_branch and main is not None:
        problem = git.delete_branch(main, agent.branch)
        branch_deleted = not problem
        lines.append(f"branch {agent.branch} deleted" if branch_deleted
                     else f"branch {agent.branch} kept: {problem}")
    else:
        lines.append(f"branch {agent.branch} stays")
    ledger.upsert_agent(name, actor=actor, state="removed", pane_id="")
    ledger.event("agent-remove", agent=name, actor=actor, worktree=str(worktree),
                 branch=agent.branch, branch_deleted=branch_deleted)
    return "; ".join(lines)


def main_worktree_of(ledger: Ledger, worktree: Path | str) -> Path | None:
    """The main worktree: from an agent's (or experiment's) worktree, else from the repository
    holding the ledger; None when neither is inside a git repository any more."""
    for start in (worktree, ledger.path.parent):
        if not start or not Path(start).is_dir():
            continue
        try:
            return git.main_worktree(start)
        except git.GitError:
            continue
    return None
