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
    carried: tuple[Experiment, ...] = ()  # earlier kept runs of its branch whose changes it holds

    @property
    def main_moved(self) -> bool:
        """Main's train.py changed since the experiment's branch left main: ask exact / merge / cancel."""
        return self.plan.main_moved

    def describe(self) -> str:
        exp, plan = self.experiment, self.plan
        lines = [f"Adopt #{exp.id} ({exp.val_bpb_text}) into {plan.branch} at {plan.main_head[:7]}?"]
        if self.carried:
            lines.append("It also carries the kept changes of " + _listing(self.carried) + ".")
        if plan.main_moved:
            lines.append(f"main's train.py changed since #{exp.id}'s branch left main at "
                         f"{plan.parent_commit[:7]} (another adoption landed): adopt anyway (exact "
                         "copy of what was measured), 3-way merge (committed, marked needs rerun), "
                         "or cancel.")
        return "\n".join(lines)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "(no description)"


def _listing(experiments: tuple[Experiment, ...]) -> str:
    return ", ".join(f"#{e.id} {_one_line(e.description)}" for e in experiments)


def _main_of(ledger: Ledger, exp: Experiment) -> Path:
    main = main_worktree_of(ledger, exp.worktree)
    if main is None:
        where = f"its worktree {exp.worktree} is gone" if exp.worktree else "it has no recorded worktree"
        raise ActionError(f"#{exp.id}: cannot find the main worktree ({where} and the ledger is not "
                          "inside a git repository)")
    return main


def commit_message(exp: Experiment, carried: tuple[Experiment, ...] = ()) -> str:
    """Subject naming the experiment; a body listing the other kept changes that come with it."""
    subject = f"Adopt experiment #{exp.id}: {_one_line(exp.description)} (val_bpb {exp.val_bpb_text})"
    if not carried:
        return subject
    body = "\n".join(f"- #{e.id} {_one_line(e.description)} (val_bpb {e.val_bpb_text})" for e in carried)
    return f"{subject}\n\nAlso carries these kept changes of its branch:\n{body}"


def _carried(ledger: Ledger, exp: Experiment, plan: git.AdoptPlan) -> tuple[Experiment, ...]:
    """Kept, not yet adopted runs of the branch between where it left main and the experiment."""
    commits = set(git.commits_between(plan.main, plan.parent_commit, plan.exp_commit))
    return tuple(e for e in ledger.experiments(branch=exp.branch, decision="keep")
                 if e.id != exp.id and not e.adopted_sha and e.commit_sha
                 and e.commit_sha != exp.commit_sha
                 and any(c.startswith(e.commit_sha) for c in commits))


def adopt_check(ledger: Ledger, exp_id: int) -> AdoptOffer:
    exp = _experiment(ledger, exp_id)
    if exp.decision not in ADOPTABLE:
        raise ActionError(f"#{exp_id} is {exp.effective_decision}; only kept experiments can be adopted")
    if exp.adopted_sha:
        raise ActionError(f"#{exp_id} was already adopted as {exp.adopted_sha[:7]}")
    if not exp.commit_sha:
        raise ActionError(f"#{exp_id} has no recorded commit (imported or observed run)")
    try:
        # the base is where the branch left main, not the experiment's parent on its own branch
        plan = git.adopt_check(_main_of(ledger, exp), exp.commit_sha, None)
        carried = _carried(ledger, exp, plan)
    except git.GitError as exc:
        raise ActionError(f"#{exp_id}: {exc}") from exc
    if plan.main_dirty:
        raise ActionError(f"main worktree {plan.main} has uncommitted changes "
                          f"({', '.join(plan.dirty_files)}); commit or stash them first")
    if plan.identical:
        raise ActionError(f"main's train.py already equals #{exp_id}'s; nothing to adopt")
    return AdoptOffer(exp, plan, carried)


def adopt_experiment(ledger: Ledger, exp_id: int, mode: str = "exact", actor: str = "human") -> str:
    """Commit #exp_id's train.py onto main ("exact") or a 3-way merge of it ("merge")."""
    offer = adopt_check(ledger, exp_id)
    exp = offer.experiment
    try:
        result = git.adopt(offer.plan.main, exp.commit_sha, offer.plan.parent_commit,
                           commit_message(exp, offer.carried), mode=mode)
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
