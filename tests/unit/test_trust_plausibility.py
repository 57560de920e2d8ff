"""Trust, item 1: an impossible or implausible val_bpb, or a row from a results.tsv, never
becomes the best that live runs are compared with unless a human approves it.

Real git worktrees, real SQLite, `cockpit run` with the stand-in train.py, `cockpit import` and
the results.tsv watcher's import as they run in the cockpit.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.ledger import chain
from app.ledger.store import Ledger
from app.observe.worktrees import import_results_tsv
from app.policy import PolicySettings, Verdict
from app.policy.safeguards import hold_implausible, plausibility
from gitrepo import git
from runnerhelpers import cli, cockpit_env, set_constant, start_cockpit
from waiting import wait_for

BRANCH = "autoresearch/t1-alice"



def run_json(wt: Path, message: str = "try", *args: str) -> dict:
    code, out, err = cli("run", "-m", message, "--json", *args, cwd=wt)
    assert code == 0, err
    return json.loads(out)


def config(project: SimpleNamespace, text: str) -> None:
    (project.main / ".autoresearch").mkdir(exist_ok=True)
    (project.main / ".autoresearch" / "config.toml").write_text(text)


# ---------------------------------------------------------------------------
# The rule

@pytest.mark.parametrize("value, baseline, kind", [
    (-5.0, 0.99, "impossible"),
    (0.0, 0.99, "impossible"),
    (math.nan, 0.99, "impossible"),
    (math.inf, 0.99, "impossible"),
    (-5.0, None, "impossible"),
    (0.0001, 0.99, "implausible"),
    (0.79, 0.99, "implausible"),
    (0.80, 0.99, ""),
    (0.97, 0.99, ""),
    (0.0001, None, ""),  # nothing to compare with: only physics is checked
    (None, 0.99, ""),  # no value is a crash, decided elsewhere
])
def test_plausibility_table(value, baseline, kind) -> None:
    check = plausibility(value, baseline, ratio=0.8)
    assert check.kind == kind and bool(check) == bool(kind)
    if kind:
        assert ("impossible" if kind == "impossible" else "below") in check.reason


def test_implausible_ratio_is_validated() -> None:
    with pytest.raises(ValueError):
        PolicySettings(implausible_ratio=1.5)
    with pytest.raises(ValueError):
        PolicySettings(implausible_ratio=math.nan)


def test_hold_never_keeps_an_implausible_value() -> None:
    keep = Verdict("keep", "improves")
    assert hold_implausible(keep, plausibility(-5.0, 0.99)).decision == "discard"
    assert hold_implausible(keep, plausibility(0.01, 0.99)).decision == "pending"
    assert hold_implausible(Verdict("discard", "worse"), plausibility(0.01, 0.99)).decision == "discard"
    assert hold_implausible(Verdict("crash", "exit 1"), plausibility(math.nan, 0.99)).decision == "crash"
    assert hold_implausible(keep, plausibility(0.98, 0.99)) is keep


# ---------------------------------------------------------------------------
# Attacks through `cockpit run`

@pytest.mark.parametrize("fake", ["-5.0", "0.0"])
def test_an_impossible_val_bpb_is_discarded_and_does_not_poison_the_branch(project, fake) -> None:
    assert run_json(project.wt, "baseline")["decision"] == "keep"
    set_constant(project.wt, "VAL_BPB", float(fake))
    bad = run_json(project.wt, "print an impossible number")
    assert bad["decision"] == "discard" and "implausible" in bad["flags"]
    assert "impossible" in bad["reason"]
    git(project.wt, "reset", "--hard", "HEAD~1")
    set_constant(project.wt, "VAL_BPB", 0.98)
    real = run_json(project.wt, "a real improvement")
    assert real["decision"] == "keep" and real["branch_best"]["id"] == 1
    with Ledger(project.db) as db:
        assert db.get(bad["id"]).implausible == 1
        assert db.best(branch=BRANCH).id == real["id"]


def test_an_implausibly_good_value_waits_for_a_human_even_in_auto_mode(project) -> None:
    config(project, 'review = "auto"\nreview_timeout_s = 1\n')
    run_json(project.wt, "baseline")
    set_constant(project.wt, "VAL_BPB", 0.0001)
    bad = run_json(project.wt, "too good to be true")
    assert bad["decision"] == "discard" and bad["review"] == "expired"
    assert "implausible" in bad["flags"] and "not kept" in bad["reason"]
    with Ledger(project.db) as db:
        assert db.best(branch=BRANCH).id == 1


def test_a_human_can_approve_an_implausible_value(project) -> None:
    config(project, 'review_timeout_s = 60\n')
    run_json(project.wt, "baseline")
    set_constant(project.wt, "VAL_BPB", 0.5)
    proc = start_cockpit("run", "-m", "a breakthrough?", "--json", cwd=project.wt,
                         env=cockpit_env())

    def pending() -> int | None:
        with Ledger(project.db) as db:
            rows = [e.id for e in db.experiments() if e.review == "pending"]
        return rows[0] if rows else None
    exp_id = wait_for(pending, timeout=60)
    code, _, err = cli("approve", str(exp_id), cwd=project.main)
    assert code == 0, err
    out, err = proc.communicate(timeout=60)
    result = json.loads(out)
    assert result["decision"] == "keep" and result["review"] == "approved"
    with Ledger(project.db) as db:
        assert db.best(branch=BRANCH).id == exp_id
        assert chain.verify(db) == []  # runner, review and approve: every write is on the chain


# ---------------------------------------------------------------------------
# Attacks through results.tsv

FAKE_TSV = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc1234\t0.000100\t1.0\tkeep\tfake\n"


def test_a_fake_row_in_a_watched_results_tsv_cannot_poison_the_branch_best(project) -> None:
    run_json(project.wt, "baseline")
    (project.wt / "results.tsv").write_text(FAKE_TSV)
    with Ledger(project.db) as db:
        report = import_results_tsv(db, project.wt, settle_s=0)
        assert len(report.imported) == 1
        fake = db.get(report.imported[0])
        assert fake.branch == BRANCH and fake.decision == "keep" and fake.is_foreign
    set_constant(project.wt, "VAL_BPB", 0.98)
    real = run_json(project.wt, "a real improvement")
    assert real["decision"] == "keep" and real["branch_best"]["id"] == 1


def test_cockpit_import_with_a_branch_cannot_poison_it_until_a_human_approves(project) -> None:
    run_json(project.wt, "baseline")
    fake = project.tmp / "fake.tsv"
    fake.write_text(FAKE_TSV)
    code, out, err = cli("import", str(fake), "--branch", BRANCH, "--json", cwd=project.main)
    assert code == 0, err
    with Ledger(project.db) as db:
        imported = [e for e in db.experiments(branch=BRANCH) if e.is_foreign]
        assert len(imported) == 1 and db.best(branch=BRANCH).id == 1
    set_constant(project.wt, "VAL_BPB", 0.98)
    assert run_json(project.wt, "a real improvement")["decision"] == "keep"
    # shown and searchable as its own series
    code, out, _ = cli("history", "--json", cwd=project.main)
    assert any(row["id"] == imported[0].id for row in json.loads(out))
    # a human's approval makes it a best
    code, out, err = cli("approve", str(imported[0].id), cwd=project.main)
    assert code == 0, err
    with Ledger(project.db) as db:
        assert db.get(imported[0].id).review == "approved"
        assert db.best(branch=BRANCH).id == imported[0].id


def test_the_tui_offers_approve_for_a_kept_row_from_a_results_tsv() -> None:
    from app.ledger.records import Experiment
    from app.ledger.vocabulary import actions_for

    imported = Experiment(id=1, backend="import", status="finished", decision="keep")
    assert "approve" in actions_for(imported)
    assert "approve" not in actions_for(imported, read_only=True)
    assert "approve" not in actions_for(Experiment(id=2, status="finished", decision="keep"))
