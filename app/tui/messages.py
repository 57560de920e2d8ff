"""App-wide messages: workers post them, handlers on screens and the app own the state."""
from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from app.git import DiffStat
    from app.tui.poller import DashboardData


class LedgerChanged(Message):
    """Fresh dashboard data after the ledger changed; a newer one replaces an unhandled older one."""

    def __init__(self, data: DashboardData) -> None:
        super().__init__()
        self.data = data

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LedgerChanged)


class LedgerUnavailable(Message):
    """No usable ledger (yet): the reason is shown as the empty state; the poller keeps trying."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LedgerUnavailable)


class ActionFinished(Message):
    """A human action (kill, approve, note, adopt ...) was written, or failed with `error`."""

    def __init__(self, action: str, exp_id: int | None, outcome: str = "", error: str = "") -> None:
        super().__init__()
        self.action = action
        self.exp_id = exp_id
        self.outcome = outcome
        self.error = error


class AgentDiff(Message):
    """What an agent is changing right now: its worktree's train.py against the branch head
    (`stat` None: unknown, e.g. its worktree is gone). A newer one for the agent replaces this."""

    def __init__(self, agent: str, worktree: str, stat: DiffStat | None) -> None:
        super().__init__()
        self.agent = agent
        self.worktree = worktree
        self.stat = stat

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AgentDiff) and message.agent == self.agent


class AgentStates(Message):
    """Agents' states as just refreshed (pane process ended, worktree gone) for a read-only
    cockpit, which shows them without writing them to the ledger."""

    def __init__(self, states: dict[str, str]) -> None:
        super().__init__()
        self.states = states

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, AgentStates)
