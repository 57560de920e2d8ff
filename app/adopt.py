"""Adopt an experiment into main: what was measured is what lands, and every adoption is audited.

The git side (exact copy or 3-way merge of train.py, dirty main and conflicts leaving main
untouched) lives in app/git.py; this module ties it to the ledger: which experiments may be
adopted, the commit message, the `adopt` event and the experiment's `adopted_sha`/`needs_rerun`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app import git
from app.actions import ActionError, _experiment
from app.agents.lifecycle import main_worktree_of
from app.ledger.store import Experiment, Ledger

ADOPTABLE = ("keep",)


@dataclass(frozen=True)
class AdoptOffer:
    experiment: Experiment
    plan: git.AdoptPlan

    @property
    def main_moved(self) -> bool:
        """Main's train.py changed since the experiment's parent: ask exact / merge / cancel."""
        return self.plan.main_moved

    def describe(self) -> str:
        exp, plan = self.experiment, self.plan
        lines = [f"Adopt #{exp.id} ({exp.val_bpb_text}) into {plan.branch} at {plan.main_head[:7]}?"]
        if plan.main_moved:
            lines.append(f"main's train.py changed since #{exp.id}'s parent {plan.parent_commit[:7]} "
                         "(another adoption landed): adopt anyway (exact copy of what was measured), "
                         "3-way merge (committed, marked needs rerun), or cancel.")
        return "\n".join(lines)


def _main_of(ledger: Ledger, exp: Experiment) -> Path:
    main = main_worktree_of(ledger, exp.worktree)
    if main is None:
        raise ActionError(f"#{exp.id}: cannot find the main worktree (its worktree "
                          f"{exp.worktree or '?'} is gone and the ledger is not inside a git repository)")
    return main


def commit_message(exp: Experiment) -> str:
    description = " ".join(exp.description.split()) or "(no description)"
    return f"Adopt experiment #{exp.id}: {description} (val_bpb {exp.val_bpb_text})"


def adopt_check(ledger: Ledger, exp_id: int) -> AdoptOffer:
    exp = _experiment(ledger, exp_id)
    if exp.decision not in ADOPTABLE:
        raise ActionError(f"#{exp_id} is {exp.effective_decision}; only kept experiments can be adopted")
    if exp.adopted_sha:
        raise ActionError(f"#{exp_id} was already adopted as {exp.adopted_sha[:7]}")
    if not exp.commit_sha:
        raise ActionError(f"#{exp_id} has no recorded commit (imported or observed run)")
    try:
        plan = git.adopt_check(_main_of(ledger, exp), exp.commit_sha, exp.parent_sha or None)
    except git.GitError as exc:
        raise ActionError(f"#{exp_id}: {exc}") from exc
    if plan.main_dirty:
        raise ActionError(f"main worktree {plan.main} has uncommitted changes "
                          f"({', '.join(plan.dirty_files)}); commit or stash them first")
    if plan.identical:
        raise ActionError(f"main's train.py already equals #{exp_id}'s; nothing to adopt")
    return AdoptOffer(exp, plan)


def adopt_experiment(ledger: Ledger, exp_id: int, mode: str = "exact", actor: str = "human") -> str:
    """Commit #exp_id's train.py onto main ("exact") or a 3-way merge of it ("merge")."""
    offer = adopt_check(ledger, exp_id)
    exp = offer.experiment
    try:
        result = git.adopt(offer.plan.main, exp.commit_sha, exp.parent_sha or None,
                           commit_message(exp), mode=mode)
    except git.GitError as exc:
        ledger.event("adopt-failed", experiment_id=exp_id, actor=actor, mode=mode, error=str(exc))
        raise ActionError(str(exc)) from exc
    ledger.update(exp_id, event="adopt", actor=actor, adopted_sha=result.main_sha,
                  needs_rerun=int(result.needs_rerun),
                  detail={"mode": mode, "main_sha": result.main_sha, "branch": result.branch,
                          "previous_sha": result.previous_sha, "main_moved": result.main_moved,
                          "needs_rerun": result.needs_rerun})
    note = " (3-way merge: needs rerun)" if result.needs_rerun else ""
    return f"#{exp_id} adopted into {result.branch} as {result.main_sha[:7]}{note}"
