"""Who is acting: a human, or an agent (an LLM with a shell, in its own worktree).

Human-only verbs (approve, reject, adopt, killing another agent's run, relaxing the review mode,
notes authored as a human) refuse from an agent's environment: `$COCKPIT_AGENT` is set (every
agent pane gets it), or the current folder is inside a worktree where an agent works. Events
record the actor this finds, never a name the caller chose.

This stops an obedient or confused agent and keeps the record honest; it is not a wall against a
hostile process of the same user, which could unset the variable and change folder. That case is
what the event hash chain is for (`cockpit verify`, app/ledger/chain.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from app import git
from app.errors import UsageError
from app.ledger.queries import agent_worktrees
from app.ledger.store import Ledger

AGENT_ENV = "COCKPIT_AGENT"
HUMAN = "human"
AGENTS_HOME = (".autoresearch", "worktrees")  # default home of agent worktrees in main


class RoleError(UsageError):
    """A human-only verb asked for from an agent's environment (exit status 2)."""


@dataclass(frozen=True)
class Identity:
    agent: str  # "" for a human
    why: str = ""  # how the agent was recognised

    @property
    def is_agent(self) -> bool:
        return bool(self.agent)

    @property
    def author(self) -> str:
        """A note's author: the agent's name (`agent:<name>` if it is named like a human)."""
        return self.actor if self.agent in ("", HUMAN) else self.agent

    @property
    def actor(self) -> str:
        """What events record: `human`, or `agent:<name>` (never confusable with a human)."""
        return f"agent:{self.agent}" if self.agent else HUMAN


def identify(ledger: Ledger | None, cwd: Path | None = None) -> Identity:
    """The caller's role from its environment and folder."""
    name = os.environ.get(AGENT_ENV, "").strip()
    if name:
        return Identity(name, f"${AGENT_ENV}={name}")
    here = Path(cwd or os.getcwd()).resolve()
    top = git.toplevel(here)
    try:
        main = git.main_worktree(here)
    except git.GitError:
        return Identity("")
    if top is None or top == main:
        return Identity("")
    if Path(*AGENTS_HOME) in _relative(top, main):
        return Identity(top.name, f"{top} is an agent worktree")
    known = agent_worktrees(ledger) if ledger is not None else {}
    agent = known.get(str(top))
    return Identity(agent, f"{top} is agent {agent}'s worktree") if agent else Identity("")


def _relative(path: Path, main: Path) -> list[Path]:
    try:
        rel = path.relative_to(main)
    except ValueError:
        return []
    return [rel, *rel.parents]


def require_human(identity: Identity, what: str) -> None:
    """RoleError unless a human is acting."""
    if identity.is_agent:
        raise RoleError(f"{what} is for humans; refused from agent {identity.agent!r}'s "
                        f"environment ({identity.why}): ask the human in the cockpit")
