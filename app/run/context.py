"""What the ledger says around one run: the bests, baselines, noise and streak a decision needs.

Read-only queries; the runner asks them once training has ended, so they see every run that
finished meanwhile on other worktrees.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from app.ledger.records import COMPARABLE_SQL
from app.ledger.store import Experiment, Ledger, finite
from app.policy import crash_streak, noise_sigma

EVAL_CONSTANTS = ("time_budget", "max_seq_len", "eval_tokens", "vocab_size")
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
    tokens = exp.get("total_tokens_M") if isinstance(exp, dict) else exp.total_tokens_M
    seconds = exp.get("training_seconds") if isinstance(exp, dict) else exp.training_seconds
    if not _number(tokens) or not _number(seconds) or seconds <= 0:
        return None
    return tokens * 1e6 / seconds


def _number(value: Any) -> bool:
    return finite(value) is not None


def _first_keep(ledger: Ledger, column: str, value: str) -> Experiment | None:
    row = ledger.conn.execute(
        f"SELECT id FROM experiments WHERE {column} = ? AND decision = 'keep' AND integrity = 0 "
        f"AND val_bpb IS NOT NULL AND {COMPARABLE_SQL} ORDER BY id LIMIT 1", (value,)).fetchone()
    return ledger.get(row[0]) if row else None


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


def main_best(ledger: Ledger, main_branch: str | None, constants: dict[str, Any],
              exclude_id: int) -> Experiment | None:
    """The best kept run that is on main: run on main's branch or adopted into it, measured
    under the same eval constants."""
    where = ["decision = 'keep'", "integrity = 0", "val_bpb IS NOT NULL", "id != ?", COMPARABLE_SQL,
             "(branch = ? OR adopted_sha != '')"]
    args: list[Any] = [exclude_id, main_branch or ""]
    for key, value in constants.items():
        where.append(f"({key} IS NULL OR {key} = ?)")
        args.append(value)
    row = ledger.conn.execute(f"SELECT id FROM experiments WHERE {' AND '.join(where)} "
                              "ORDER BY val_bpb, id LIMIT 1", args).fetchone()
    return ledger.get(row[0]) if row else None


def branch_sigma(ledger: Ledger, branch: str, exclude_id: int | None = None) -> tuple[float | None, int]:
    """Pooled noise of repeated runs of one commit on `branch`, and how many runs it rests on."""
    values: dict[str, list[float]] = defaultdict(list)
    placeholders = ", ".join("?" for _ in MEASURED)
    rows = ledger.conn.execute(
        f"SELECT commit_sha, val_bpb FROM experiments WHERE branch = ? AND integrity = 0 "
        f"AND implausible = 0 AND {COMPARABLE_SQL} "
        f"AND decision IN ({placeholders}) AND val_bpb IS NOT NULL AND commit_sha != '' "
        "AND id != ?", (branch, *MEASURED, exclude_id or -1))
    for sha, val in rows:
        values[sha].append(val)
    repeated = {sha: v for sha, v in values.items() if len(v) >= 2}
    return noise_sigma(repeated), sum(len(v) for v in repeated.values())


def gather(ledger: Ledger, *, exp_id: int, branch: str, tag: str, main_branch: str | None,
           constants: dict[str, Any]) -> Context:
    sigma, runs = branch_sigma(ledger, branch, exclude_id=exp_id)
    return Context(
        branch_best=ledger.best(branch=branch, exclude_id=exp_id),
        main_best=main_best(ledger, main_branch, constants, exp_id),
        branch_baseline=_first_keep(ledger, "branch", branch),
        tag_baseline=_first_keep(ledger, "tag", tag),
        sigma=sigma, noise_runs=runs)


def agent_streak(ledger: Ledger, agent: str) -> int:
    """Consecutive crashes of `agent`, newest first."""
    recent = ledger.experiments(agent=agent, newest_first=True, limit=50)
    return crash_streak([e.decision for e in recent])


def repeat_original(ledger: Ledger, branch: str, commit_sha: str) -> Experiment | None:
    """The first clean measurement of `commit_sha` on `branch`: what a repeat repeats."""
    row = ledger.conn.execute(
        "SELECT id FROM experiments WHERE branch = ? AND commit_sha = ? AND repeat_of IS NULL "
        "AND decision IN ('keep', 'discard') AND val_bpb IS NOT NULL ORDER BY id LIMIT 1",
        (branch, commit_sha)).fetchone()
    return ledger.get(row[0]) if row else None


def is_kept_commit(ledger: Ledger, branch: str, commit_sha: str) -> bool:
    """`commit_sha` is the commit of a kept experiment on `branch` (running it again repeats it)."""
    return any(e.commit_sha == commit_sha for e in ledger.experiments(branch=branch, decision="keep"))
