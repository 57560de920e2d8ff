"""What the ledger says around one run: the bests, baselines, noise and streak a decision needs.

Read-only queries; the runner asks them once training has ended, so they see every run that
finished meanwhile on other worktrees.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from app.ledger.queries import (
    EVAL_CONSTANT_COLUMNS,
    best_on_main,
    first_keep,
    first_measurement,
    measured_commits,
)
from app.ledger.store import Experiment, Ledger, finite
from app.policy import crash_streak, noise_sigma

EVAL_CONSTANTS = EVAL_CONSTANT_COLUMNS
MEASURED = ("keep", "discard", "repeat")  # decisions whose val_bpb is a clean measurement


@dataclass(frozen=True)
class Context:
    branch_best: Experiment | None
    main_best: Experiment | None
    branch_baseline: Experiment | None  # first kept run of the branch: the contention reference
    tag_baseline: Experiment | None  # first kept run of the tag: the eval-constants reference
    sigma: float | None
    noise_runs: int  # runs behind sigma


def tok_per_sec(exp: Experiment | dict[str, Any]) -> float | None:
    """Training throughput from the summary: total tokens over training seconds."""
    tokens = finite(exp.get("total_tokens_M") if isinstance(exp, dict) else exp.total_tokens_M)
    seconds = finite(exp.get("training_seconds") if isinstance(exp, dict) else exp.training_seconds)
    if tokens is None or seconds is None or seconds <= 0:
        return None
    return tokens * 1e6 / seconds


def _number(value: Any) -> bool:
    return finite(value) is not None


def constants_of(exp: Experiment | dict[str, Any]) -> dict[str, Any]:
    get = exp.get if isinstance(exp, dict) else lambda k: getattr(exp, k)
    return {k: get(k) for k in EVAL_CONSTANTS if _number(get(k))}


def constants_mismatch(run: dict[str, Any], baseline: Experiment | None) -> list[str]:
    """Eval constants of `run` that differ from the tag baseline's, as `name a != b` texts."""
    if baseline is None:
        return []
    mine, theirs = constants_of(run), constants_of(baseline)
    return [f"{k} {mine[k]:g} != {theirs[k]:g}" for k in EVAL_CONSTANTS
            if k in mine and k in theirs and float(mine[k]) != float(theirs[k])]


def branch_sigma(ledger: Ledger, branch: str, exclude_id: int | None = None) -> tuple[float | None, int]:
    """Pooled noise of repeated runs of one commit on `branch`, and how many runs it rests on."""
    values: dict[str, list[float]] = defaultdict(list)
    for sha, val in measured_commits(ledger, branch, MEASURED, exclude_id):
        values[sha].append(val)
    repeated = {sha: v for sha, v in values.items() if len(v) >= 2}
    return noise_sigma(repeated), sum(len(v) for v in repeated.values())


def gather(ledger: Ledger, *, exp_id: int, branch: str, tag: str, main_branch: str | None,
           constants: dict[str, Any]) -> Context:
    sigma, runs = branch_sigma(ledger, branch, exclude_id=exp_id)
    return Context(
        branch_best=ledger.best(branch=branch, exclude_id=exp_id),
        main_best=best_on_main(ledger, main_branch, constants, exp_id),
        branch_baseline=first_keep(ledger, "branch", branch),
        tag_baseline=first_keep(ledger, "tag", tag),
        sigma=sigma, noise_runs=runs)


def agent_streak(ledger: Ledger, agent: str) -> int:
    """Consecutive crashes of `agent`, newest first."""
    recent = ledger.experiments(agent=agent, newest_first=True, limit=50)
    return crash_streak([e.decision for e in recent])


def repeat_original(ledger: Ledger, branch: str, commit_sha: str) -> Experiment | None:
    """The first clean measurement of `commit_sha` on `branch`: what a repeat repeats."""
    return first_measurement(ledger, branch, commit_sha)


def is_kept_commit(ledger: Ledger, branch: str, commit_sha: str) -> bool:
    """`commit_sha` is the commit of a kept experiment on `branch` (running it again repeats it)."""
    return any(e.commit_sha == commit_sha for e in ledger.experiments(branch=branch, decision="keep"))
