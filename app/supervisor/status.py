"""Attention as anyone reading the ledger sees it (the TUI, `cockpit attention`), from the same
queries the supervisor uses; its pane observations come from its row."""
from __future__ import annotations

from app.config import Settings
from app.ledger import supervisor as rows
from app.ledger.store import Ledger
from app.supervisor.attention import (
    NEW_BEST_WINDOW_S,
    AttentionInputs,
    AttentionItem,
    collect,
    supervisor_alive,
)


def current_attention(ledger: Ledger, settings: Settings, now: float) -> list[AttentionItem]:
    """What needs a human, with the supervisor as its row says (its waiting panes only while alive)."""
    row = rows.read_supervisor(ledger)
    if row is not None and not supervisor_alive(row, now):  # what a dead one saw is stale
        row = rows.SupervisorRow(state=row.state, message=row.message, heartbeat_at=row.heartbeat_at)
    return attention_with(ledger, settings, now, row)


def attention_with(ledger: Ledger, settings: Settings, now: float,
                   row: rows.SupervisorRow | None) -> list[AttentionItem]:
    return collect(AttentionInputs(now, rows.pending_reviews(ledger),
                                   rows.agent_activity(ledger, settings.crash_streak + 20),
                                   rows.new_bests(ledger, now - NEW_BEST_WINDOW_S), row), settings)
