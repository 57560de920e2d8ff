"""Which tag a view shows by default: the one whose run finished last (named queries)."""
from __future__ import annotations

from app.ledger.store import Ledger


def latest_finished_tag(ledger: Ledger) -> str | None:
    """The tag of the most recently finished experiment, else of the newest one; None when empty."""
    row = ledger.conn.execute(
        "SELECT tag FROM experiments ORDER BY status = 'finished' DESC, "
        "COALESCE(finished_at, 0) DESC, id DESC LIMIT 1").fetchone()
    return row[0] if row else None
