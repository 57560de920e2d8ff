"""What the supervisor looks after now and then: lost runs and their orphaned train.py, agents'
liveness, and agents' panes that wait for their human.

Usage (the supervisor's thread, which owns the Ledger):
    said = reap(ledger)                          # lines for the log
    panes = PaneWatch(patterns, idle_s=20); waiting = panes.check(ledger.agents(), socket)
"""
from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.actions import reap_lost
from app.agents import lifecycle, panes
from app.ledger.records import Agent
from app.ledger.store import Ledger
from app.ledger.supervisor import lost_with_child
from app.run.procs import same_process, stop_if_same
from app.supervisor.attention import prompt_line

ORPHAN_WINDOW_S = 24 * 3600.0  # lost runs this recent are checked for a train.py still running
ORPHAN_GRACE_S = 5.0  # TERM, then KILL after this long
PANE_LINES = 40  # lines captured from an agent's pane


def reap(ledger: Ledger) -> list[str]:
    """Mark runs whose runner died as lost and stop their train.py if it still runs (identified by
    pid and start time, so a recycled pid is never signalled)."""
    said = [f"#{exp_id} marked lost: its runner is gone" for exp_id in reap_lost(ledger)]
    for exp in lost_with_child(ledger, time.time() - ORPHAN_WINDOW_S):
        if same_process(exp.pid, exp.pid_start) and stop_if_same(exp.pid, exp.pid_start, ORPHAN_GRACE_S):
            ledger.event("orphan-stopped", experiment_id=exp.id, actor="supervisor", pid=exp.pid)
            said.append(f"#{exp.id}: stopped its orphaned train.py (pid {exp.pid}), its runner died")
    return said


def liveness(ledger: Ledger) -> list[str]:
    """Refresh every agent's state (gone, exited); lines for the changes."""
    said = []
    for agent in ledger.agents():
        fresh = lifecycle.refresh_agent(ledger, agent, actor="supervisor")
        if fresh.state != agent.state:
            said.append(f"agent {agent.name}: {agent.state} -> {fresh.state}")
    return said


@dataclass
class _Seen:
    digest: str
    since: float  # when the pane last changed


class PaneWatch:
    """Agents whose pane has not changed for `idle_s` and shows a prompt wait for input."""

    def __init__(self, patterns: Sequence[re.Pattern[str]], idle_s: float,
                 socket: str | None = None) -> None:
        self.patterns = patterns
        self.idle_s = idle_s
        self.socket = socket  # the tmux server (-L); None: each agent's own, else the default
        self._seen: dict[str, _Seen] = {}
        self.waiting: dict[str, dict[str, Any]] = {}

    def check(self, agents: Sequence[Agent], now: float | None = None) -> dict[str, dict[str, Any]]:
        """agent -> {"since", "prompt"} for the agents waiting now."""
        now = time.time() if now is None else now
        waiting: dict[str, dict[str, Any]] = {}
        for agent in agents:
            text = self._capture(agent)
            if text is None:
                self._seen.pop(agent.name, None)
                continue
            digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
            seen = self._seen.get(agent.name)
            if seen is None or seen.digest != digest:
                self._seen[agent.name] = seen = _Seen(digest, now)
            if now - seen.since < self.idle_s:
                continue
            prompt = prompt_line(text, self.patterns)
            if prompt is not None:
                waiting[agent.name] = {"since": seen.since, "prompt": prompt}
        self.waiting = waiting
        return waiting

    def _capture(self, agent: Agent) -> str | None:
        if agent.state != "running" or not agent.pane_id or not lifecycle.is_alive(agent):
            return None
        try:
            return panes.capture(agent.pane_id, PANE_LINES, self.socket or agent.tmux_socket or None)
        except panes.PaneError:
            return None
