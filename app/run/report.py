"""What `cockpit run` tells the agent when an experiment ends: a short block, or JSON."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from app import git
from app.ledger.store import Experiment, Ledger
from app.policy import Verdict, should_rethink
from app.run.context import Context, agent_streak, branch_sigma
from app.safeguards import HeadState, git_action

if TYPE_CHECKING:
    from app.run.plan import Plan

TAIL_SHOWN = 15  # crash-tail lines printed in the text block (JSON carries all 50)
RETHINK = ("STOP and rethink: {n} crashes in a row. Read the crash tails (cockpit status ID), "
           "go back to the last kept commit and try a simpler, different change.")
REPEAT_ACTION = "nothing to do: a repeat measures noise and changes no commit"


@dataclass
class Best:
    id: int
    val_bpb: float
    branch: str

    @classmethod
    def of(cls, exp: Experiment | None) -> Best | None:
        return None if exp is None or exp.val_bpb is None else cls(exp.id, exp.val_bpb, exp.branch)


@dataclass
class RunResult:
    id: int
    decision: str
    reason: str
    review: str | None
    val_bpb: float | None
    branch: str
    tag: str
    agent: str
    commit: str
    branch_best: Best | None  # before this run
    main_best: Best | None
    delta_vs_branch: float | None
    delta_vs_main: float | None
    margin: float | None
    sigma: float | None
    git_action: str
    crash_streak: int
    rethink: str
    flags: list[str]
    repeat_of: int | None
    exit_code: int | None
    log_path: str
    tail: list[str] = field(default_factory=list)
    reported_val_bpb: float | None = None  # what train.py printed
    measured_val_bpb: float | None = None  # what the cockpit measured (app/run/trusted.py)
    trusted_eval_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _delta(val: float | None, best: Best | None) -> float | None:
    return None if val is None or best is None else round(val - best.val_bpb, 9)


def build_result(ledger: Ledger, plan: Plan, exp_id: int, context: Context, verdict: Verdict,
                 decision: str, review: str | None, tail: list[str], log_path: str,
                 flags: dict[str, bool]) -> RunResult:
    exp = ledger.get(exp_id)
    branch_best, main_best = Best.of(context.branch_best), Best.of(context.main_best)
    streak = agent_streak(ledger, plan.agent)
    sigma = context.sigma
    if decision == "repeat":
        sigma = branch_sigma(ledger, plan.branch)[0]
    action = (REPEAT_ACTION if plan.repeat_of is not None
              else git_action(decision, head_state(ledger, plan, exp_id)))
    return RunResult(
        id=exp_id, decision=decision, reason=exp.reason, review=review, val_bpb=exp.val_bpb,
        branch=plan.branch, tag=plan.tag, agent=plan.agent, commit=plan.commit_sha,
        branch_best=branch_best, main_best=main_best,
        delta_vs_branch=_delta(exp.val_bpb, branch_best),
        delta_vs_main=_delta(exp.val_bpb, main_best), margin=verdict.margin, sigma=sigma,
        git_action=action, crash_streak=streak,
        rethink=RETHINK.format(n=streak) if should_rethink(streak, plan.policy) else "",
        flags=[name.replace("_", "-") for name, on in flags.items() if on],
        repeat_of=plan.repeat_of.id if plan.repeat_of else None, exit_code=exp.exit_code,
        log_path=log_path, tail=tail if decision not in ("keep", "discard", "repeat") else [],
        reported_val_bpb=exp.reported_val_bpb, measured_val_bpb=exp.measured_val_bpb,
        trusted_eval_s=exp.trusted_eval_s)


def head_state(ledger: Ledger, plan: Plan, exp_id: int) -> HeadState:
    """Where the agent's branch stands now, from git and the ledger."""
    measured = plan.commit_sha
    kept = any(e.commit_sha == measured and e.id != exp_id
               for e in ledger.experiments(branch=plan.branch, decision="keep"))
    try:
        main_head = git.head_sha(plan.main)
        return HeadState(measured=measured, head=git.head_sha(plan.worktree), kept=kept,
                         on_main=git.is_ancestor(plan.main, measured, main_head),
                         has_parent=bool(plan.parent_sha))
    except git.GitError:  # HEAD unreadable: what the ledger knows still protects a keep
        return HeadState(measured=measured, head="", kept=kept, has_parent=bool(plan.parent_sha))


def _vs(delta: float | None, best: Best | None, what: str) -> str:
    if best is None:
        return f"no {what} best yet"
    shown = "n/a" if delta is None else f"{delta:+.6f}"
    return f"{shown}  ({what} best #{best.id} {best.val_bpb:.6f})"


def _provenance(result: RunResult) -> str:
    if result.measured_val_bpb is None:
        return ""
    printed = "n/a" if result.reported_val_bpb is None else f"{result.reported_val_bpb:.6f}"
    return (f"  (measured by the cockpit in {result.trusted_eval_s or 0:.1f} s: "
            f"{result.measured_val_bpb:.6f}; train.py printed {printed})")


def format_block(result: RunResult) -> str:
    val = "n/a" if result.val_bpb is None else f"{result.val_bpb:.6f}"
    lines = [
        f"cockpit run #{result.id}: {result.decision.upper()}" + (
            f" (review: {result.review})" if result.review else ""),
        f"  reason        {result.reason}",
        f"  val_bpb       {val}{_provenance(result)}",
        f"  vs branch     {_vs(result.delta_vs_branch, result.branch_best, 'branch')}",
        f"  vs main       {_vs(result.delta_vs_main, result.main_best, 'main')}",
        f"  git action    {result.git_action}",
        f"  crash streak  {result.crash_streak}",
    ]
    if result.sigma is not None:
        lines.append(f"  noise σ       {result.sigma:.6f} (keep margin {result.margin or 0:.6f})")
    if result.flags:
        lines.append(f"  flags         {', '.join(result.flags)}")
    lines.append(f"  log           {result.log_path}")
    if result.tail:
        shown = result.tail[-TAIL_SHOWN:]
        if len(result.tail) > TAIL_SHOWN and result.tail[0].startswith("Traceback"):
            shown = [result.tail[0], "  ..."] + result.tail[2 - TAIL_SHOWN:]  # the traceback's start and end
        lines.append("  crash tail of the log:")
        lines += [f"    {line}" for line in shown]
    if result.rethink:
        lines.append(f"  {result.rethink}")
    return "\n".join(lines)
