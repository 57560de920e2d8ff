"""The shared words: state, verdict, kept, live, symbols and the actions that apply."""
from __future__ import annotations

import pytest

from app.ledger.records import Experiment
from app.ledger.store import Ledger
from app.ledger.vocabulary import (
    EXPERIMENT_ACTIONS,
    STATES,
    SYMBOLS,
    actions_for,
    is_kept,
    is_live,
    labelled,
    state_of,
    verdict_of,
)


@pytest.mark.parametrize("status, decision, review, state, verdict", [
    ("registered", None, None, "registered", "registered"),
    ("running", None, None, "running", "running"),
    ("finished", "pending", "pending", "pending", "pending"),
    ("finished", "keep", "approved", "keep", "approved"),
    ("finished", "discard", "rejected", "discard", "rejected"),
    ("finished", "keep", "expired", "keep", "keep"),
    ("finished", "crash", None, "crash", "crash"),
    ("finished", "lost", None, "lost", "lost"),
])
def test_state_and_verdict(status: str, decision: str | None, review: str | None, state: str,
                           verdict: str) -> None:
    exp = Experiment(id=1, status=status, decision=decision, review=review)
    assert state_of(exp) == state == exp.effective_decision
    assert verdict_of(exp) == verdict


@pytest.mark.parametrize("decision, integrity, val_bpb, kept", [
    ("keep", 0, 1.0, True), ("keep", 1, 1.0, False), ("keep", 0, None, False),
    ("discard", 0, 1.0, False), ("pending", 0, 1.0, False), (None, 0, 1.0, False),
])
def test_kept(decision: str | None, integrity: int, val_bpb: float | None, kept: bool) -> None:
    assert is_kept(Experiment(id=1, status="finished", decision=decision, integrity=integrity,
                              val_bpb=val_bpb)) is kept


def test_kept_and_live_agree_with_their_sql(tmp_path) -> None:
    """The ledger's best and live queries use the SQL twins: same answer as the predicates."""
    rows = [dict(decision=d, integrity=i, val_bpb=v, status=s, tag="t")
            for d in ("keep", "discard", None) for i in (0, 1) for v in (None, 1.5, 1.2)
            for s in ("registered", "running", "finished")]
    with Ledger(tmp_path / "l.db") as ledger:
        for values in rows:
            ledger.register(**values)
        every = ledger.experiments()
        kept = [e for e in every if is_kept(e)]
        assert ledger.best(tag="t") == min(kept, key=lambda e: (e.val_bpb, e.id))
        assert [e.id for e in ledger.live()] == [e.id for e in every if is_live(e)]


def test_every_state_has_one_symbol() -> None:
    assert all(state in SYMBOLS for state in STATES)
    assert labelled("timeout") == "◷ timeout" and labelled("pending") == "◆ pending"
    assert labelled("bogus") == "· bogus"


@pytest.mark.parametrize("values, applies", [
    (dict(status="running"), {"open", "note", "kill"}),
    (dict(status="registered"), {"open", "note", "kill"}),
    (dict(status="finished", decision="pending", review="pending"), {"open", "note", "approve", "reject"}),
    (dict(status="finished", decision="keep"), {"open", "note", "adopt"}),
    (dict(status="finished", decision="keep", adopted_sha="abc"), {"open", "note"}),
    (dict(status="finished", decision="discard"), {"open", "note"}),
])
def test_actions_for(values: dict, applies: set[str]) -> None:
    exp = Experiment(id=1, **values)
    assert actions_for(exp) == applies and applies <= set(EXPERIMENT_ACTIONS)
    assert actions_for(exp, read_only=True) == {"open"}
    assert actions_for(None) == frozenset()
