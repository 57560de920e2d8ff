"""App-wide messages: workers post them, handlers on screens and the app own the state."""
from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
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
