"""Table tests for app/policy.py: every lifecycle rule and its boundaries."""
from __future__ import annotations

import math
import statistics

import pytest

from app.policy import (
    ADVICE,
    CATEGORIES,
    NOT_COMPARABLE,
    NOT_COMPARED,
    RESET_COMMAND,
    STRATEGIES,
    Outcome,
    PastExperiment,
    PolicySettings,
    RunFacts,
    Verdict,
    adjust,
    crash_streak,
    decide,
    git_action,
    hard_timeout_s,
    integrity_reasons,
    is_contended,
    keep_margin,
    noise_sigma,
    run_flags,
    should_rethink,
    suggest,
)

OK = dict(exit_code=0, has_summary=True)


def finished(val: float, **overrides) -> Outcome:
    return Outcome(**{**OK, "val_bpb": val, **overrides})


# ---------------------------------------------------------------------------
# decide()

@pytest.mark.parametrize(
    "outcome, best, sigma, settings, decision, near, baseline",
    [
        # killed and timeout win over everything else, including a good val_bpb
        (finished(0.9, killed=True, timed_out=True), 1.0, None, {}, "killed", False, False),
        (finished(0.9, timed_out=True), 1.0, None, {}, "timeout", False, False),
        (finished(0.9, killed=True, exit_code=-15), None, None, {}, "killed", False, False),
        (finished(0.9, timed_out=True, exit_code=-9), None, None, {}, "timeout", False, False),
        # crashes: exit code, FAIL, no summary, missing / non-finite val_bpb
        (finished(0.9, exit_code=1), 1.0, None, {}, "crash", False, False),
        (finished(0.9, exit_code=-11), None, None, {}, "crash", False, False),
        (finished(0.9, exit_code=None), 1.0, None, {}, "crash", False, False),
        (finished(0.9, failed=True), 1.0, None, {}, "crash", False, False),
        (finished(0.9, has_summary=False), 1.0, None, {}, "crash", False, False),
        (finished(None), 1.0, None, {}, "crash", False, False),
        (finished(math.nan), 1.0, None, {}, "crash", False, False),
        (finished(math.inf), None, None, {}, "crash", False, False),
        # baseline: no branch best yet (first run of a tag / fresh branch), even if "worse"
        (finished(5.0), None, None, {}, "keep", False, True),
        (finished(5.0), math.nan, 0.01, {}, "keep", False, True),
        # keep iff val < best - margin (strict), margin 0 by default
        (finished(0.999999), 1.0, None, {}, "keep", False, False),
        (finished(1.0), 1.0, None, {}, "discard", True, False),
        # near-miss: discards within 0.002 of the best, boundary inclusive
        (finished(1.002), 1.0, None, {}, "discard", True, False),
        (finished(1.002001), 1.0, None, {}, "discard", False, False),
        (finished(1.5), 1.0, None, {}, "discard", False, False),
        # min_delta: the improvement must exceed it
        (finished(0.999), 1.0, None, {"min_delta": 0.001}, "discard", True, False),
        (finished(0.998999), 1.0, None, {"min_delta": 0.001}, "keep", False, False),
        # sigma: margin = k * sigma when above min_delta
        (finished(0.996), 1.0, 0.002, {}, "discard", True, False),
        (finished(0.995999), 1.0, 0.002, {}, "keep", False, False),
        (finished(0.996), 1.0, 0.002, {"k_sigma": 1.0}, "keep", False, False),
        (finished(0.9985), 1.0, 0.0001, {"min_delta": 0.001}, "keep", False, False),
        # a custom near-miss threshold
        (finished(1.004), 1.0, None, {"near_miss": 0.005}, "discard", True, False),
        (finished(1.0005), 1.0, None, {"near_miss": 0.0}, "discard", False, False),
    ],
)
def test_decide_rules(outcome, best, sigma, settings, decision, near, baseline):
    verdict = decide(outcome, best, sigma, PolicySettings(**settings))
    assert (verdict.decision, verdict.near_miss, verdict.is_baseline) == (decision, near, baseline)
    assert verdict.reason


def test_decide_reports_delta_and_margin():
    verdict = decide(finished(1.0015), 1.0, 0.0004, PolicySettings())
    assert verdict.delta == pytest.approx(0.0015)
    assert verdict.margin == pytest.approx(0.0008)
    assert "near-miss" in verdict.reason
    keep = decide(finished(0.99), 1.0, None)
    assert keep.delta == pytest.approx(-0.01) and keep.margin == 0.0
    assert decide(finished(0.9), None, None).delta is None
    assert decide(finished(0.9, exit_code=2), 1.0, None).delta is None
    assert "exit code 2" in decide(finished(0.9, exit_code=2), 1.0, None).reason


# ---------------------------------------------------------------------------
# noise and margin

def test_noise_sigma_none_until_a_commit_has_two_runs():
    assert noise_sigma({}) is None
    assert noise_sigma({"a": [1.0], "b": [1.1]}) is None
    assert noise_sigma({"a": [1.0, math.nan], "b": [None]}) is None


def test_noise_sigma_single_commit_is_sample_stdev():
    values = [0.991, 0.994, 0.989, 0.996]
    assert noise_sigma({"a": values, "b": [0.5]}) == pytest.approx(statistics.stdev(values))


def test_noise_sigma_pools_commits_by_degrees_of_freedom():
    a, b = [1.0, 1.002], [0.95, 0.951, 0.955]
    pooled_var = ((len(a) - 1) * statistics.variance(a) + (len(b) - 1) * statistics.variance(b)) / (
        len(a) + len(b) - 2
    )
    assert noise_sigma({"a": a, "b": b}) == pytest.approx(math.sqrt(pooled_var))
    assert noise_sigma({"a": [0.97, 0.97]}) == 0.0


@pytest.mark.parametrize(
    "settings, sigma, margin",
    [
        ({}, None, 0.0),
        ({"min_delta": 0.001}, None, 0.001),
        ({}, 0.0015, 0.003),
        ({"min_delta": 0.005}, 0.0015, 0.005),
        ({"k_sigma": 3.0}, 0.001, 0.003),
        ({"min_delta": 0.001}, math.nan, 0.001),
    ],
)
def test_keep_margin(settings, sigma, margin):
    assert keep_margin(PolicySettings(**settings), sigma) == pytest.approx(margin)


@pytest.mark.parametrize(
    "bad",
    [{"min_delta": -0.1}, {"k_sigma": math.nan}, {"near_miss": -1}, {"contended_frac": 0},
     {"contended_frac": 1.0}, {"crash_streak_limit": 0}, {"timeout_factor": 0},
     {"min_timeout_s": math.inf}],
)
def test_settings_reject_nonsense(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        PolicySettings(**bad)


# ---------------------------------------------------------------------------
# contention, streaks, timeouts, git

@pytest.mark.parametrize(
    "steps, tps, base_steps, base_tps, contended",
    [
        (1000, 50000, 1000, 50000, False),
        (750, 50000, 1000, 50000, False),  # exactly 25% below: not more than 25%
        (749, 50000, 1000, 50000, True),
        (1000, 37500, 1000, 50000, False),
        (1000, 37499, 1000, 50000, True),
        (1500, 80000, 1000, 50000, False),  # faster is fine
        (None, 10000, 1000, 50000, True),  # one known metric is enough
        (None, None, 1000, 50000, False),
        (100, 100, None, None, False),  # unknown baseline
        (100, 100, 0, 0, False),
        (math.nan, 100, 1000, math.nan, False),
    ],
)
def test_is_contended(steps, tps, base_steps, base_tps, contended):
    assert is_contended(steps, tps, base_steps, base_tps) is contended


def test_is_contended_custom_fraction():
    assert is_contended(850, None, 1000, None, frac=0.1)
    assert not is_contended(850, None, 1000, None, frac=0.2)


@pytest.mark.parametrize(
    "decisions, streak",
    [
        ([], 0),
        (["keep"], 0),
        (["crash"], 1),
        (["crash", "crash", "keep", "crash"], 2),
        (["crash", "timeout", "crash"], 3),  # timeouts count
        (["crash", "killed", "crash", "crash"], 3),  # human kills are skipped, not counted
        (["killed", "killed"], 0),
        ([None, "crash", "lost", "crash", "discard", "crash"], 2),  # running / lost skipped
        (["discard", "crash", "crash"], 0),
        (["pending", "crash"], 0),
    ],
)
def test_crash_streak(decisions, streak):
    assert crash_streak(decisions) == streak


@pytest.mark.parametrize(
    "streak, limit, rethink",
    [(0, 3, False), (2, 3, False), (3, 3, True), (7, 3, True), (1, 1, True), (4, 5, False)],
)
def test_should_rethink(streak, limit, rethink):
    assert should_rethink(streak, PolicySettings(crash_streak_limit=limit)) is rethink


@pytest.mark.parametrize(
    "budget, settings, limit",
    [
        (300, {}, 600),  # upstream: 10 minutes for the 5-minute budget
        (600, {}, 1200),
        (10, {}, 60),  # smoke budgets get the floor
        (30, {}, 60),
        (45, {"min_timeout_s": 30}, 90),
        (300, {"timeout_factor": 1.5}, 450),
    ],
)
def test_hard_timeout(budget, settings, limit):
    assert hard_timeout_s(budget, PolicySettings(**settings)) == pytest.approx(limit)


@pytest.mark.parametrize("budget", [0, -5, math.nan, math.inf])
def test_hard_timeout_rejects_bad_budget(budget):
    with pytest.raises(ValueError, match="time budget"):
        hard_timeout_s(budget)


@pytest.mark.parametrize(
    "decision, resets",
    [("keep", False), ("approved", False), ("discard", True), ("crash", True),
     ("timeout", True), ("killed", True), ("lost", True), ("rejected", True)],
)
def test_git_action(decision, resets):
    assert (git_action(decision) == RESET_COMMAND) is resets
    if not resets:
        assert "nothing" in git_action(decision)


def test_git_action_pending_waits_and_unknown_is_an_error():
    assert "wait" in git_action("pending")
    with pytest.raises(ValueError, match="running"):
        git_action("running")


# ---------------------------------------------------------------------------
# suggest()

def history(*decisions: str, near: set[int] = frozenset(), category: str | None = None):
    return [PastExperiment(i, d, category, i in near) for i, d in enumerate(decisions, start=1)]


@pytest.mark.parametrize(
    "exps, strategy",
    [
        (history(), "explore"),
        (history("keep", "keep", "keep", "keep"), "explore"),  # < 5 finished
        # running / killed / lost / pending are not finished: still < 5
        (history("crash", "crash", "crash", "crash", None, "killed", "lost", "pending"), "explore"),
        (history("crash", "crash", "crash", "crash", "crash"), "exploit"),  # crash rate 1.0
        # crash rate over the last 10 only: 6/10 > 0.5 -> exploit, 5/10 is not
        (history(*["keep"] * 20, *["crash"] * 6, *["discard"] * 4), "exploit"),
        (history(*["crash"] * 20, "keep", *["crash"] * 5, *["discard"] * 4), "explore"),
        # timeouts count as crashes in the rate
        (history(*["timeout"] * 3, *["crash"] * 3, *["discard"] * 4), "exploit"),
        # no keep in the last 10 and > 20 finished: ablation (< 2 near-misses) ...
        (history("keep", *["discard"] * 20), "ablation"),
        (history("keep", *["discard"] * 20, near={3}), "ablation"),
        # ... or combine with >= 2 near-misses (anywhere in the history)
        (history("keep", *["discard"] * 20, near={2, 20}), "combine"),
        # exactly 20 finished is not a plateau yet
        (history(*["discard"] * 20, near={2, 3}), "explore"),
        # a single keep in the last 10 breaks the plateau; 1/10 is not > 0.3 -> explore
        (history(*["discard"] * 20, "keep", *["discard"] * 9, near={2, 3}), "explore"),
        # keep rate over the last 10: 4/10 > 0.3 -> exploit, 3/10 is not
        (history(*["discard"] * 6, *["keep"] * 4), "exploit"),
        (history(*["discard"] * 7, *["keep"] * 3), "explore"),
        (history("keep", "discard", "discard", "discard", "discard"), "explore"),  # 0.2
        (history("keep", "keep", "discard", "discard", "discard"), "exploit"),  # 0.4
        # approved counts as keep, rejected as discard
        (history("approved", "approved", "rejected", "rejected", "rejected"), "exploit"),
        (history("keep", "rejected", "rejected", "rejected", "rejected"), "explore"),
    ],
)
def test_suggest_strategy(exps, strategy):
    result = suggest(exps)
    assert result.strategy == strategy
    assert result.advice == ADVICE[strategy]
    assert result.reason


def test_suggest_rates_near_misses_and_counts():
    exps = history(*["discard"] * 8, "keep", "crash", "crash", near={2, 5, 7})
    result = suggest(exps)
    assert result.finished == 11
    assert result.recent_keep_rate == pytest.approx(0.1)
    assert result.recent_crash_rate == pytest.approx(0.2)
    assert result.near_misses == [7, 5, 2]  # newest first
    assert suggest([]).recent_keep_rate is None


def test_suggest_underexplored_categories():
    exps = (
        [PastExperiment(i, "discard", "lr") for i in range(3)]
        + [PastExperiment(10 + i, "keep", "Optimizer ") for i in range(2)]
        + [PastExperiment(20 + i, "crash", "architecture") for i in range(4)]
        + [PastExperiment(30, "discard", "quantum"), PastExperiment(31, "discard", None)]
        + [PastExperiment(40 + i, "killed", "batch") for i in range(5)]  # not finished
    )
    result = suggest(exps)
    assert result.underexplored == [c for c in CATEGORIES if c not in ("lr", "architecture")]
    assert result.category_counts["optimizer"] == 2
    assert result.category_counts["quantum"] == 1
    assert result.category_counts["batch"] == 0


def test_every_strategy_has_advice():
    assert set(ADVICE) == set(STRATEGIES)
    assert all(len(text.split()) > 15 for text in ADVICE.values())


# ---------------------------------------------------------------------------
# The runner's rules on top of decide(): adjust, integrity reasons, flags

KEEP = Verdict("keep", "improves the branch best by 0.01", delta=-0.01, margin=0.002)
DISCARD = Verdict("discard", "0.01 worse than the branch best", delta=0.01, margin=0.002)
CRASH = Verdict("crash", "exit code 1", margin=0.002)
TIMEOUT = Verdict("timeout", "ran past the hard time limit", margin=0.002)
KILLED = Verdict("killed", "stopped on request", margin=0.002)


@pytest.mark.parametrize("verdict, facts, decision, reason", [
    (KEEP, RunFacts(), "keep", KEEP.reason),
    (DISCARD, RunFacts(), "discard", DISCARD.reason),
    (KILLED, RunFacts(), "killed", KILLED.reason),
    (KEEP, RunFacts(signal_name="SIGTERM"), "killed", "the runner received SIGTERM"),
    (TIMEOUT, RunFacts(timeout_s=600), "timeout", "ran past the hard limit of 600 s"),
    (CRASH, RunFacts(stream_error="modal stream broke"), "crash", "modal stream broke"),
    (CRASH, RunFacts(failed=True), "crash", "train.py reported FAIL (loss NaN or > 100), exit code 1"),
    (Verdict("crash", "train.py reported FAIL"), RunFacts(failed=True), "crash", "train.py reported FAIL"),
    (CRASH, RunFacts(exit_code=0, summary_problems=["val_bpb missing"]), "crash",
     "summary unusable: val_bpb missing"),
    (CRASH, RunFacts(exit_code=1, summary_problems=["val_bpb missing"]), "crash", "exit code 1"),
    (KEEP, RunFacts(summary_problems=["a", "b"]), "crash", "summary unusable: a; b"),
    (DISCARD, RunFacts(integrity=["dirty tree"]), "discard", NOT_COMPARED + "dirty tree"),
    (KEEP, RunFacts(integrity=["x", "y"]), "discard", NOT_COMPARED + "x; y"),
    (KEEP, RunFacts(repeat_of=(7, 1.0), val_bpb=0.99), "repeat", "repeat of #7 (1.000000): -0.010000"),
    (KEEP, RunFacts(summary_problems=["bad"], integrity=["x"], repeat_of=(7, 1.0)), "crash",
     "summary unusable: bad"),
    (KEEP, RunFacts(integrity=["x"], repeat_of=(7, 1.0)), "discard", NOT_COMPARED + "x"),
    (CRASH, RunFacts(integrity=["x"], repeat_of=(7, 1.0)), "crash", "exit code 1"),
    (KEEP, RunFacts(unlike="measured unlike #2 (attention flex != fa3)"), "discard",
     NOT_COMPARABLE + "measured unlike #2 (attention flex != fa3)"),
    (DISCARD, RunFacts(unlike="u", repeat_of=(7, 1.0)), "discard", NOT_COMPARABLE + "u"),
    (KEEP, RunFacts(unlike="u", integrity=["x"]), "discard", NOT_COMPARED + "x"),
    (CRASH, RunFacts(unlike="u"), "crash", "exit code 1"),
])
def test_adjust_rules(verdict, facts, decision, reason):
    adjusted = adjust(verdict, facts)
    assert (adjusted.decision, adjusted.reason) == (decision, reason)
    assert adjusted.margin == verdict.margin


def test_adjust_repeat_keeps_the_delta():
    assert adjust(KEEP, RunFacts(repeat_of=(3, 1.0), val_bpb=1.0)).delta == KEEP.delta


@pytest.mark.parametrize("plan, baseline_id, mismatch, reasons", [
    ([], None, [], []),
    (["dirty"], None, ["vocab_size 1 != 2"], ["dirty"]),
    ([], 4, [], []),
    (["dirty"], 4, ["vocab_size 1 != 2"],
     ["dirty", "eval constants differ from tag 't' baseline #4 (vocab_size 1 != 2): use another --tag"]),
])
def test_integrity_reasons(plan, baseline_id, mismatch, reasons):
    assert integrity_reasons(plan, "t", baseline_id, mismatch) == reasons


@pytest.mark.parametrize("verdict, contended, plan_integrity, flags", [
    (KEEP, False, False,
     {"contended": False, "integrity": False, "not_comparable": False, "near_miss": False}),
    (KEEP, True, True,
     {"contended": True, "integrity": True, "not_comparable": False, "near_miss": False}),
    (Verdict("discard", NOT_COMPARED + "x"), False, False,
     {"contended": False, "integrity": True, "not_comparable": False, "near_miss": False}),
    (Verdict("discard", NOT_COMPARABLE + "x"), False, False,
     {"contended": False, "integrity": False, "not_comparable": True, "near_miss": False}),
    (Verdict("discard", "close", near_miss=True), False, False,
     {"contended": False, "integrity": False, "not_comparable": False, "near_miss": True}),
])
def test_run_flags(verdict, contended, plan_integrity, flags):
    assert run_flags(verdict, contended=contended, plan_integrity=plan_integrity) == flags
