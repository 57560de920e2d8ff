"""The demo's processes: what runs in a sandbox, and stopping one agent's process tree.

`sandbox.stop_demo` stops agents the normal way first, then sweeps up whatever of the demo is
still alive (search agents, `cockpit run`s, train.py, prepare.py, its private tmux servers).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from app.agents import lifecycle as agents
from app.agents import panes
from app.ledger.store import Agent, Ledger


@dataclass
class StopReport:
    stopped: list[str] = field(default_factory=list)  # agents whose process was running
    killed: list[int] = field(default_factory=list)  # leftover processes that had to be signalled
    survivors: list[int] = field(default_factory=list)  # still alive afterwards: should be none
    tmux_servers: list[str] = field(default_factory=list)  # private tmux servers stopped
    lost: list[int] = field(default_factory=list)  # experiments whose runner did not finish

    def lines(self) -> list[str]:
        out = [f"stopped agents: {', '.join(self.stopped) or 'none were running'}"]
        if self.killed:
            out.append(f"killed {len(self.killed)} leftover processes")
        if self.lost:
            out.append(f"experiments marked lost: {', '.join(f'#{i}' for i in self.lost)}")
        out.append(f"processes left behind: {', '.join(map(str, self.survivors))}"
                   if self.survivors else "no process left behind")
        return out


def sandbox_processes(root: Path, sockets: tuple[str, ...] = ()) -> list[psutil.Process]:
    """Demo work in the sandbox: search agents, `cockpit run`s, train.py and prepare.py, our tmux
    servers; never this process or its ancestors, nor anything else working there."""
    mine = {os.getpid(), *(p.pid for p in psutil.Process().parents())}
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        argv, cwd = proc.info.get("cmdline") or [], proc.info.get("cwd") or ""
        if proc.pid in mine or not argv:
            continue
        if Path(argv[0]).name == "tmux" and any(s in argv for s in sockets):
            found.append(proc)
        elif cwd == str(root) or cwd.startswith(str(root) + os.sep):
            runs = "run" in argv and ("app.cli" in argv or any(Path(a).name == "cockpit" for a in argv[:2]))
            if runs or any(a.endswith(("app.agents.search", "train.py", "prepare.py")) for a in argv[:3]):
                found.append(proc)
    return found


def agent_tree(agent: Agent) -> list[psutil.Process]:
    """The agent's process and everything under it, while it still runs."""
    try:
        proc = psutil.Process(agent.pid) if agents.is_alive(agent) else None
        return [proc, *proc.children(recursive=True)] if proc else []
    except psutil.Error:
        return []


def stop_agent(ledger_path: Path, agent: Agent) -> None:
    """Stop one agent the normal way (its pane, its run); a failure is left to the sweep after."""
    with Ledger(ledger_path) as ledger, suppress(agents.AgentError, panes.PaneError):
        agents.stop_agent(ledger, agent.name, actor="demo", socket=agent.tmux_socket or None)


def alive(proc: psutil.Process) -> bool:
    """Running and not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def signal_all(procs: Iterable[psutil.Process], send: Callable[[psutil.Process], None]) -> bool:
    """`send` (terminate or kill) to each of `procs` still there; True if any was."""
    sent = False
    for proc in procs:
        with suppress(psutil.Error):
            send(proc)
            sent = True
    return sent
