"""Pure experiment decisions: keep/discard/crash, noise margin, contention, streaks, strategy.

Plain values in, dataclasses out; no I/O, so the runner, the CLI and the TUI share one rulebook
(DESIGN.md, "Experiment lifecycle") and the tests can table-test every rule.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# ---------------------------------------------------------------------------
# Vocabulary

DECISIONS = ("keep", "discard", "crash", "timeout", "killed")  # what decide() can return
CATEGORIES = (  # the experiment categories agents pick from; suggest() reports the sparse ones
    "architecture", "optimizer", "lr", "schedule", "batch", "regularization",
    "init", "attention", "data", "efficiency", "other",
)
STRATEGIES = ("explore", "exploit", "combine", "ablation")
RESET_COMMAND = "git reset --hard HEAD~1"  # undo the experiment's commit on the agent's branch
NOT_COMPARED = "not compared (integrity): "  # the reason of a run measured but not compared
NOT_COMPARABLE = "not comparable: "  # the reason of a run measured unlike its reference (comparability key)

_TOLERANCE = 1e-9  # val_bpb is printed with 6 decimals: values closer than this are equal
_STREAK_COUNTS = frozenset({"crash", "timeout"})  # the agent's own failures
_STREAK_NEUTRAL = frozenset({"killed", "lost", "running", "registered", "queued"})  # not the agent's doing
_AS_KEEP = frozenset({"keep", "approved"})
_AS_DISCARD = frozenset({"discard", "rejected"})
_AS_CRASH = frozenset({"crash", "timeout"})
_GIT_ACTIONS = {
    "keep": "nothing to do: the commit stays",
    "approved": "nothing to do: the commit stays",
    "pending": "wait for the review verdict (cockpit approve / reject)",
    "discard": RESET_COMMAND,
    "rejected": RESET_COMMAND,
    "crash": RESET_COMMAND,
    "timeout": RESET_COMMAND,
    "killed": RESET_COMMAND,  # never measured: the branch must only hold measured commits
    "lost": RESET_COMMAND,
}


# ---------------------------------------------------------------------------
# Settings

@dataclass(frozen=True)
class PolicySettings:
    """Thresholds of the lifecycle rules; defaults follow upstream and n-autoresearch."""

    min_delta: float = 0.0  # smallest val_bpb improvement that counts as a keep
    k_sigma: float = 2.0  # keep margin in units of the measured run-to-run noise
    near_miss: float = 0.002  # discards at most this far above the best are near-misses
    contended_frac: float = 0.25  # steps or tok/s this much below the baseline's -> contended
    crash_streak_limit: int = 3  # consecutive crashes before "stop and rethink"
    timeout_factor: float = 2.0  # hard limit = factor x time budget (10 min for 5 min)
    min_timeout_s: float = 60.0  # the hard limit never goes below this
    implausible_ratio: float = 0.8  # val_bpb below ratio x the series baseline is implausible

    def __post_init__(self) -> None:
        for name in ("min_delta", "k_sigma", "near_miss", "min_timeout_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if not 0 < self.contended_frac < 1:
            raise ValueError(f"contended_frac must be between 0 and 1, got {self.contended_frac!r}")
        if self.crash_streak_limit < 1:
            raise ValueError(f"crash_streak_limit must be >= 1, got {self.crash_streak_limit!r}")
        if not math.isfinite(self.timeout_factor) or self.timeout_factor <= 0:
            raise ValueError(f"timeout_factor must be > 0, got {self.timeout_factor!r}")
        if not 0 < self.implausible_ratio <= 1:
            raise ValueError(f"implausible_ratio must be in (0, 1], got {self.implausible_ratio!r}")


# ---------------------------------------------------------------------------
# Noise and margin

def noise_sigma(values_by_commit: Mapping[str, Sequence[float]]) -> float | None:
    """Pooled standard deviation of repeated runs of one commit; None until a commit has 2 runs."""
    squares = 0.0
    dof = 0
    for values in values_by_commit.values():
        finite = [v for v in values if v is not None and math.isfinite(v)]
        if len(finite) < 2:
            continue
        mean = sum(finite) / len(finite)
        squares += sum((v - mean) ** 2 for v in finite)
        dof += len(finite) - 1
    return math.sqrt(squares / dof) if dof else None


def keep_margin(settings: PolicySettings, sigma: float | None) -> float:
    """The improvement a run must beat: max(min_delta, k * sigma)."""
    if sigma is None or not math.isfinite(sigma):
        return settings.min_delta
    return max(settings.min_delta, settings.k_sigma * sigma)


# ---------------------------------------------------------------------------
# One experiment's decision

@dataclass(frozen=True)
class Outcome:
    """What the runner saw when train.py ended."""

    exit_code: int | None  # None: no normal exit (signal, lost)
    val_bpb: float | None
    has_summary: bool  # the `---` summary block was printed
    failed: bool = False  # train.py printed FAIL (loss exploded)
    timed_out: bool = False  # stopped by the hard timeout
    killed: bool = False  # stopped on a human's kill request


@dataclass(frozen=True)
class Verdict:
    decision: str  # one of DECISIONS
    reason: str  # one short line for humans
    is_baseline: bool = False
    near_miss: bool = False
    delta: float | None = None  # val_bpb - branch best (negative = better)
    margin: float = 0.0


def decide(
    outcome: Outcome,
    branch_best: float | None,
    sigma: float | None,
    settings: PolicySettings | None = None,
) -> Verdict:
    """Apply the lifecycle rules in order: killed, timeout, crash, baseline, keep, discard."""
    settings = settings or PolicySettings()
    margin = keep_margin(settings, sigma)
    if outcome.killed:
        return Verdict("killed", "stopped on request", margin=margin)
    if outcome.timed_out:
        return Verdict("timeout", "ran past the hard time limit", margin=margin)
    crash_reason = _crash_reason(outcome)
    if crash_reason:
        return Verdict("crash", crash_reason, margin=margin)
    val = outcome.val_bpb
    assert val is not None
    if branch_best is None or not math.isfinite(branch_best):
        return Verdict("keep", "baseline: first run on this branch", is_baseline=True, margin=margin)
    delta = val - branch_best
    if -delta > margin + _TOLERANCE:
        return Verdict("keep", f"improves the branch best by {-delta:.6f} (margin {margin:.6f})",
                       delta=delta, margin=margin)
    near = delta <= settings.near_miss + _TOLERANCE
    if delta < 0:
        reason = f"improvement {-delta:.6f} is within the margin {margin:.6f}"
    else:
        reason = f"{delta:.6f} worse than the branch best"
    if near:
        reason += " (near-miss)"
    return Verdict("discard", reason, near_miss=near, delta=delta, margin=margin)


def _crash_reason(outcome: Outcome) -> str:
    if outcome.exit_code is None:
        return "no exit code: the process did not exit normally"
    if outcome.exit_code != 0:
        return f"exit code {outcome.exit_code}"
    if outcome.failed:
        return "train.py reported FAIL"
    if not outcome.has_summary:
        return "no summary block"
    if outcome.val_bpb is None or not math.isfinite(outcome.val_bpb):
        return f"val_bpb is {outcome.val_bpb!r}"
    return ""


@dataclass(frozen=True)
class RunFacts:
    """What the runner knows beyond the Outcome, for the rules applied on top of decide()."""

    signal_name: str | None = None  # the run stopped because the runner received this signal
    timeout_s: float = 0.0  # the hard limit it ran under
    stream_error: str = ""  # its output stream broke (e.g. a Modal connection)
    failed: bool = False  # train.py printed FAIL
    exit_code: int | None = None
    summary_problems: Sequence[str] = ()  # why the summary block is unusable (none: usable)
    integrity: Sequence[str] = ()  # why the run must not be compared (none: compare it)
    repeat_of: tuple[int, float] | None = None  # (id, val_bpb) of the measurement it repeats
    val_bpb: float = 0.0  # the summary's
    unlike: str | None = None  # why it is measured unlike its reference (comparability_problem)


def adjust(verdict: Verdict, facts: RunFacts) -> Verdict:
    """The runner's rules on top of decide(): clearer crash reasons, unusable summaries,
    integrity (measured but not compared), repeats."""
    margin = verdict.margin
    if facts.signal_name:
        return Verdict("killed", f"the runner received {facts.signal_name}", margin=margin)
    if verdict.decision == "timeout":
        return Verdict("timeout", f"ran past the hard limit of {facts.timeout_s:g} s", margin=margin)
    unusable = "summary unusable: " + "; ".join(facts.summary_problems)
    if verdict.decision == "crash":
        if facts.stream_error:
            return Verdict("crash", facts.stream_error, margin=margin)
        if facts.failed and "FAIL" not in verdict.reason:
            return Verdict("crash", f"train.py reported FAIL (loss NaN or > 100), {verdict.reason}",
                           margin=margin)
        if facts.exit_code == 0 and facts.summary_problems:
            return Verdict("crash", unusable, margin=margin)
    if verdict.decision not in ("keep", "discard"):
        return verdict
    if facts.summary_problems:
        return Verdict("crash", unusable, margin=margin)
    if facts.integrity:
        return Verdict("discard", NOT_COMPARED + "; ".join(facts.integrity), margin=margin)
    if facts.unlike:
        return Verdict("discard", NOT_COMPARABLE + facts.unlike, margin=margin)
    if facts.repeat_of is not None:
        original_id, original_val = facts.repeat_of
        return Verdict("repeat", f"repeat of #{original_id} ({original_val:.6f}): "
                       f"{facts.val_bpb - original_val:+.6f}", delta=verdict.delta, margin=margin)
    return verdict


def integrity_reasons(plan_reasons: Sequence[str], tag: str, baseline_id: int | None,
                      mismatch: Sequence[str]) -> list[str]:
    """Why a run is not compared: the plan's reasons, and eval constants that differ from the
    tag baseline's (`mismatch`: `name a != b` texts)."""
    if not mismatch or baseline_id is None:
        return list(plan_reasons)
    return [*plan_reasons, f"eval constants differ from tag {tag!r} baseline #{baseline_id} "
            f"({', '.join(mismatch)}): use another --tag"]


def run_flags(verdict: Verdict, *, contended: bool, plan_integrity: bool) -> dict[str, bool]:
    """The flags stored with a finished run: contended, integrity, not-comparable, near-miss."""
    return {"contended": contended,
            "integrity": verdict.reason.startswith(NOT_COMPARED) or plan_integrity,
            "not_comparable": verdict.reason.startswith(NOT_COMPARABLE),
            "near_miss": verdict.near_miss}


# ---------------------------------------------------------------------------
# Flags, streaks, timeouts, git

def is_contended(
    num_steps: float | None,
    tok_per_sec: float | None,
    baseline_num_steps: float | None,
    baseline_tok_per_sec: float | None,
    frac: float = PolicySettings.contended_frac,
) -> bool:
    """True if steps or tok/s fell more than `frac` below the branch baseline's (unknown: False)."""
    return any(
        value is not None and base is not None and _known(value) and _known(base) and base > 0
        and (base - value) / base > frac + _TOLERANCE
        for value, base in ((num_steps, baseline_num_steps), (tok_per_sec, baseline_tok_per_sec))
    )


def _known(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def crash_streak(decisions_newest_first: Sequence[str | None]) -> int:
    """Consecutive crashes and timeouts, newest first; kills, lost and unfinished runs are skipped."""
    streak = 0
    for decision in decisions_newest_first:
        if decision is None or decision in _STREAK_NEUTRAL:
            continue
        if decision not in _STREAK_COUNTS:
            break
        streak += 1
    return streak


def should_rethink(streak: int, settings: PolicySettings | None = None) -> bool:
    return streak >= (settings or PolicySettings()).crash_streak_limit


def hard_timeout_s(time_budget_s: float, settings: PolicySettings | None = None) -> float:
    """Wall-clock limit for a run: timeout_factor x budget, never below min_timeout_s."""
    if not math.isfinite(time_budget_s) or time_budget_s <= 0:
        raise ValueError(f"time budget must be a positive number of seconds, got {time_budget_s!r}")
    settings = settings or PolicySettings()
    return max(settings.min_timeout_s, settings.timeout_factor * time_budget_s)


def git_action(decision: str) -> str:
    """What the agent does to its branch after a decision (app/safeguards.py checks it against
    the branch's real state)."""
    try:
        return _GIT_ACTIONS[decision]
    except KeyError:
        raise ValueError(f"no git action for decision {decision!r}") from None


# ---------------------------------------------------------------------------
# Search strategy (n-autoresearch's rules)

@dataclass(frozen=True)
class PastExperiment:
    id: int | str
    decision: str | None  # None while running
    category: str | None = None
    near_miss: bool = False


@dataclass(frozen=True)
class Suggestion:
    strategy: str  # one of STRATEGIES
    reason: str  # why this strategy, with the numbers
    advice: str  # one paragraph for the agent
    finished: int  # finished experiments in the history
    recent_keep_rate: float | None  # over the last RECENT_WINDOW finished
    recent_crash_rate: float | None
    near_misses: list[int | str] = field(default_factory=list)  # ids, newest first
    underexplored: list[str] = field(default_factory=list)  # CATEGORIES with < 3 finished runs
    category_counts: dict[str, int] = field(default_factory=dict)


MIN_FINISHED = 5  # fewer finished experiments than this: explore
RECENT_WINDOW = 10  # rates are taken over this many latest finished experiments
PLATEAU_FINISHED = 20  # more than this with no recent keep is a plateau
UNDEREXPLORED_RUNS = 3  # categories with fewer finished runs are suggested
ADVICE = {
    "explore": (
        "Explore: try a bold, different idea rather than a tweak of the last one. Prefer a "
        "category that has seen few runs, state the hypothesis before running, and keep each "
        "change small enough that a crash is easy to diagnose."
    ),
    "exploit": (
        "Exploit: stay close to the current best. Make small, safe, incremental changes to what "
        "is working (a learning rate step, a schedule tweak) and avoid risky rewrites until runs "
        "finish cleanly and keep improving."
    ),
    "combine": (
        "Combine: recent runs have plateaued, but several near-misses came close. Apply two of "
        "them together on top of the current best; changes that are each within noise can add "
        "up to a real improvement."
    ),
    "ablation": (
        "Ablation: recent runs have plateaued with nothing close to the best. Remove one "
        "component at a time from the current best to learn what actually matters, and keep any "
        "simplification that does not hurt val_bpb."
    ),
}


def suggest(history: Sequence[PastExperiment]) -> Suggestion:
    """Pick a search strategy from the experiment history (oldest first)."""
    finished = [e for e in history if _outcome_class(e.decision)]
    recent = finished[-RECENT_WINDOW:]
    keep_rate = _rate(recent, "keep")
    crash_rate = _rate(recent, "crash")
    near_misses = [e.id for e in reversed(finished) if e.near_miss]
    counts = dict.fromkeys(CATEGORIES, 0)
    for exp in finished:
        if exp.category:
            name = exp.category.strip().lower()
            counts[name] = counts.get(name, 0) + 1
    if len(finished) < MIN_FINISHED:
        strategy, reason = "explore", f"only {len(finished)} finished experiments (< {MIN_FINISHED})"
    elif crash_rate > 0.5:
        strategy, reason = "exploit", f"crash rate {crash_rate:.0%} over the last {len(recent)}"
    elif keep_rate == 0 and len(finished) > PLATEAU_FINISHED:
        strategy = "combine" if len(near_misses) >= 2 else "ablation"
        reason = (f"no keep in the last {len(recent)} of {len(finished)} finished, "
                  f"{len(near_misses)} near-misses")
    elif keep_rate > 0.3:
        strategy, reason = "exploit", f"keep rate {keep_rate:.0%} over the last {len(recent)}"
    else:
        strategy, reason = "explore", f"keep rate {keep_rate:.0%} over the last {len(recent)}"
    return Suggestion(
        strategy=strategy,
        reason=reason,
        advice=ADVICE[strategy],
        finished=len(finished),
        recent_keep_rate=keep_rate if recent else None,
        recent_crash_rate=crash_rate if recent else None,
        near_misses=near_misses,
        underexplored=[c for c in CATEGORIES if counts[c] < UNDEREXPLORED_RUNS],
        category_counts=counts,
    )


def _outcome_class(decision: str | None) -> str:
    """keep / discard / crash for finished experiments, "" for the rest (running, killed, lost)."""
    if decision in _AS_KEEP:
        return "keep"
    if decision in _AS_DISCARD:
        return "discard"
    if decision in _AS_CRASH:
        return "crash"
    return ""


def _rate(experiments: Sequence[PastExperiment], outcome: str) -> float:
    if not experiments:
        return 0.0
    return sum(_outcome_class(e.decision) == outcome for e in experiments) / len(experiments)

