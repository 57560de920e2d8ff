"""Pure trust rules on top of app/policy.py: is a val_bpb believable, and is the git action safe
for the branch as it really is. Plain values in, dataclasses out (no I/O), like policy.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from app import policy
from app.policy import RESET_COMMAND, PolicySettings, Verdict

_TOLERANCE = 1e-9  # val_bpb is printed with 6 decimals: values closer than this are equal

# ---------------------------------------------------------------------------
# Plausibility: checked before any comparison

@dataclass(frozen=True)
class Plausibility:
    """Whether a val_bpb can be believed without a human: `kind` is "" (plausible),
    "impossible" (not finite or <= 0) or "implausible" (too far below the series baseline)."""

    kind: str = ""
    reason: str = ""

    def __bool__(self) -> bool:  # true when something is wrong
        return bool(self.kind)


def plausibility(val_bpb: float | None, baseline: float | None,
                 ratio: float = PolicySettings.implausible_ratio) -> Plausibility:
    """Check `val_bpb` against physics and the series baseline; a missing value is a crash."""
    if val_bpb is None:
        return Plausibility()
    if not math.isfinite(val_bpb) or val_bpb <= 0:
        return Plausibility("impossible",
                            f"val_bpb {val_bpb!r} is impossible (bits per byte are finite and > 0)")
    if baseline is not None and math.isfinite(baseline) and baseline > 0 \
            and val_bpb < ratio * baseline - _TOLERANCE:
        return Plausibility("implausible", f"val_bpb {val_bpb:.6f} is below {ratio:g} x the "
                                           f"series baseline {baseline:.6f}")
    return Plausibility()


def hold_implausible(verdict: Verdict, check: Plausibility) -> Verdict:
    """A rule never keeps an implausible result: an impossible value is discarded (there is
    nothing to approve), an implausibly good one waits for a human (decision `pending`)."""
    if not check or verdict.decision not in ("keep", "repeat"):
        return verdict  # not kept anyway (the flag still says why it is not to be believed)
    if check.kind == "impossible" or verdict.decision != "keep":
        return Verdict("discard", f"not compared (implausible): {check.reason}",
                       delta=verdict.delta, margin=verdict.margin)
    return Verdict("pending", f"held for a human (implausible): {check.reason}",
                   is_baseline=verdict.is_baseline, delta=verdict.delta, margin=verdict.margin)


# ---------------------------------------------------------------------------
# Git actions from the branch's real state

@dataclass(frozen=True)
class HeadState:
    """The agent's branch when a run ends, as git and the ledger see it."""

    measured: str  # the commit the run measured
    head: str  # the worktree's HEAD now ("" if unknown)
    kept: bool = False  # `measured` is the commit of a kept experiment on the branch
    on_main: bool = False  # `measured` is main's commit or in main's history
    has_parent: bool = True  # `measured` has a parent to reset to


def git_action(decision: str, state: HeadState | None = None) -> str:
    """policy.git_action, checked against the branch's real state: never a reset that would drop
    a kept commit, main's commit, or a commit other than the one measured."""
    action = policy.git_action(decision)
    if action != RESET_COMMAND or state is None:
        return action
    short = state.measured[:7]
    if state.head and state.head != state.measured:
        return (f"nothing to do: HEAD moved during the run (measured {short}, HEAD is now "
                f"{state.head[:7]}); drop {short} yourself only if it is still unkept")
    if state.kept:
        return f"nothing to do: {short} is a kept commit (a re-run does not undo a keep)"
    if state.on_main:
        return f"nothing to do: {short} is main's commit; commit a change to try one"
    if not state.has_parent:
        return f"nothing to do: {short} is the first commit, it has no parent"
    return action
