"""Pure rules about the cockpit's own val_bpb (app/run/trusted.py measures, these decide): which
runs are re-measured, when a printed value is a mismatch, when training ran past the budget, and
what becomes of a keep the cockpit cannot trust. Part of the policy (app/policy.py), kept apart
so that module stays under the size limit."""
from __future__ import annotations

import math

from app.policy import Verdict

EQUAL = 1e-9  # val_bpb is printed with 6 decimals: values closer than this are equal

TRUSTED_EVAL_MODES = ("keeps", "always", "off")
OVER_BUDGET_FACTOR = 1.25  # training on the runner's clock may exceed the budget by this factor...
OVER_BUDGET_SLACK_S = 5.0  # ...plus this (step logging, untimed compile warm-up steps)


def wants_measurement(mode: str, decision: str) -> bool:
    """'keeps': keep-candidates and repeats (they set the best and the noise); 'always': every
    run with a val_bpb; 'off': none."""
    if mode == "always":
        return decision in ("keep", "discard", "repeat")
    return mode == "keeps" and decision in ("keep", "repeat")


def metric_mismatch(reported: float | None, measured: float, tolerance: float) -> bool:
    """The printed val_bpb is missing or further from the measured one than eval noise allows."""
    return (reported is None or not math.isfinite(reported)
            or abs(reported - measured) > tolerance + EQUAL)


def over_budget(train_wall_s: float | None, budget_s: float) -> bool:
    """Training took longer on the runner's clock than the time budget allows."""
    return (train_wall_s is not None
            and train_wall_s > budget_s * OVER_BUDGET_FACTOR + OVER_BUDGET_SLACK_S)


def refuse_keep(verdict: Verdict, why: str) -> Verdict:
    """A keep the cockpit cannot trust becomes a discard saying why; other verdicts keep their
    decision and get `why` appended to the reason."""
    if verdict.decision == "keep":
        return Verdict("discard", f"not kept: {why}", delta=verdict.delta, margin=verdict.margin)
    return Verdict(verdict.decision, f"{verdict.reason}; {why}", is_baseline=verdict.is_baseline,
                   near_miss=verdict.near_miss, delta=verdict.delta, margin=verdict.margin)
