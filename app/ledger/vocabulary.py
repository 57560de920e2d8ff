"""The words every view shares, defined once: live, kept, an experiment's state, its symbol, and
the actions that apply to it. The table, the detail screen, the palette, the CLI and the SQL
queries all use these (with their SQL twins for the queries).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ledger.records import Experiment

LIVE_STATUSES = ("registered", "queued", "running")  # a runner (or an observed run.log) is on it
LIVE_SQL = "status IN ('registered', 'queued', 'running')"  # queued: waiting for a GPU lease
KEPT_SQL = "decision = 'keep' AND integrity = 0 AND val_bpb IS NOT NULL"
FOREIGN_BACKENDS = ("observed", "import")  # rows from a results.tsv or run.log: their own series
# A kept row may be a best that live runs are compared with: measured by a cockpit runner, or
# approved by a human (a row from a results.tsv is only the agent's word).
COMPARABLE_SQL = "(backend NOT IN ('observed', 'import') OR review = 'approved')"
STATES = ("running", "pending", "keep", "discard", "crash", "killed", "timeout", "lost")  # filters
SYMBOLS = {  # state -> symbol shown before its name (never colour alone)
    "keep": "✓", "discard": "✗", "repeat": "↻", "crash": "‼", "killed": "☠", "timeout": "◷",
    "lost": "?", "pending": "◆", "approved": "✓", "rejected": "✗", "running": "▶",
    "registered": "○", "queued": "◌",
}
UNKNOWN_SYMBOL = "·"
REVIEW_VERDICTS = ("approved", "rejected")
EXPERIMENT_ACTIONS = ("open", "kill", "approve", "reject", "adopt", "note")
READ_ACTIONS = frozenset({"open"})  # what a read-only cockpit may still do


def is_live(exp: Experiment) -> bool:
    """Registered, queued for a GPU or running: not finished yet."""
    return exp.status in LIVE_STATUSES


def is_kept(exp: Experiment) -> bool:
    """A clean keep: decided keep (by the rule or a human approve), measured, no integrity flag.
    Only these compete for "best"."""
    return exp.decision == "keep" and not exp.integrity and exp.val_bpb is not None


def outcome(decision: str | None, status: str) -> str:
    """The decision, or the lifecycle status while there is none (the CLI's rows of plain dicts)."""
    return decision or status


def state_of(exp: Experiment) -> str:
    """What a human sees for an experiment: pending review first, then the decision or status."""
    if exp.review == "pending":
        return "pending"
    return outcome(exp.decision, exp.status)


def verdict_of(exp: Experiment) -> str:
    """state_of, naming a human verdict (approved, rejected) instead of the decision it set."""
    review = exp.review or ""
    return review if review in REVIEW_VERDICTS else state_of(exp)


def symbol(state: str) -> str:
    return SYMBOLS.get(state, UNKNOWN_SYMBOL)


def labelled(state: str) -> str:
    """`✓ keep`, `◆ pending`: a state with its symbol."""
    return f"{symbol(state)} {state}"


def actions_for(exp: Experiment | None, *, read_only: bool = False) -> frozenset[str]:
    """The EXPERIMENT_ACTIONS that apply to `exp` (none without one; only reads when read-only)."""
    if exp is None:
        return frozenset()
    applies = {"open", "note"}
    if is_live(exp):
        applies.add("kill")
    if exp.review == "pending":
        applies |= {"approve", "reject"}
    if exp.backend in FOREIGN_BACKENDS and exp.decision == "keep" and not exp.review:
        applies.add("approve")  # the agent's word from a results.tsv: a human may make it a best
    if exp.decision == "keep" and not exp.adopted_sha:
        applies.add("adopt")
    return frozenset(applies & READ_ACTIONS if read_only else applies)
