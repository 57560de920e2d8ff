"""The runner's side of the trusted val_bpb: ask train.py for its final weights, measure them in a
separate process (app/run/trusted_eval.py) with main's prepare.py and main's eval constants, time
training on the runner's clock, and settle the verdict on what the cockpit measured.

The runner calls `Trust.child_env()` before launching, `saw_steps()` as step lines arrive, and
`settle()` once train.py has exited; everything else stays here.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import app
from app import git
from app.ledger.store import finite
from app.policy import Verdict
from app.run.plan import DEFAULT_TIME_BUDGET_S, Plan, RunRefused, effective_time_budget
from app.trust_policy import metric_mismatch, over_budget, refuse_keep, wants_measurement

WEIGHTS_ENV = "COCKPIT_WEIGHTS_OUT"  # train.py saves {"config", "model"} here when it is set
EVAL_TIMEOUT_S = 900.0  # the evaluator is stopped after this long
POLL_S = 0.5
COCKPIT_ROOT = Path(app.__file__).resolve().parents[1]
MEASURABLE = ("keep", "discard", "repeat")  # decisions that rest on a val_bpb


@dataclass
class Measurement:
    val_bpb: float | None = None
    causal: bool = True
    error: str = ""
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Settled:
    verdict: Verdict
    values: dict[str, Any]  # ledger columns
    flags: dict[str, bool]
    detail: dict[str, Any]  # for the finish event: what was measured, how, and how long it took


class Trust:
    """One run's trusted evaluation; `work` (under the ledger's directory) is removed at the end."""

    def __init__(self, plan: Plan, ledger_dir: Path, exp_id: int) -> None:
        self.plan = plan
        self.mode = plan.settings.trusted_eval
        self.work = ledger_dir / "trusted" / str(exp_id)
        self.log_path = ledger_dir / "logs" / f"{exp_id}.trusted.log"
        self.weights = self.work / "weights.pt"
        self._started = self._first_step = self._last_step = 0.0
        self._device_env: dict[str, str] = {}
        self._heartbeat: Callable[[], None] = lambda: None
        self._stopped: Callable[[], bool] = lambda: False

    def child_env(self, device_env: dict[str, str]) -> dict[str, str]:
        """What train.py needs to hand its weights over (local runs, trusted_eval not off);
        `device_env` (the run's GPU lease) also holds for the evaluation."""
        self._device_env = dict(device_env)
        if self.mode == "off" or self.plan.backend != "local":
            return {}
        self.work.mkdir(parents=True, exist_ok=True)
        return {WEIGHTS_ENV: str(self.weights)}

    def started(self) -> None:
        self._started = time.monotonic()

    def saw_steps(self) -> None:
        now = time.monotonic()
        self._first_step = self._first_step or now
        self._last_step = now

    def train_wall_s(self) -> float:
        """From the first to the last step line on the runner's clock; without two step lines,
        train.py's whole lifetime (an upper bound)."""
        if self._last_step > self._first_step:
            return self._last_step - self._first_step
        return time.monotonic() - self._started if self._started else 0.0

    def budget_s(self) -> float:
        """Main's time budget ([tool.cockpit.train_env]), never the agent's environment."""
        try:
            return effective_time_budget(self.plan.settings.train_env)
        except RunRefused:
            return DEFAULT_TIME_BUDGET_S

    # --- the decision ----------------------------------------------------------------------

    def settle(self, verdict: Verdict, reported: float | None,
               redecide: Callable[[float], Verdict], heartbeat: Callable[[], None],
               stopped: Callable[[], bool]) -> Settled:
        """The verdict on the cockpit's own measurement where one is wanted; flags and columns.
        `heartbeat` is called while the evaluator runs; it is stopped once `stopped()`."""
        self._heartbeat, self._stopped = heartbeat, stopped
        try:
            return self._settle(verdict, reported, redecide)
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def _settle(self, verdict: Verdict, reported: float | None,
                redecide: Callable[[float], Verdict]) -> Settled:
        wall = self.train_wall_s()
        values: dict[str, Any] = {"reported_val_bpb": reported, "train_wall_s": round(wall, 3)}
        flags = {"metric_mismatch": False, "non_causal": False, "over_budget": False,
                 "unmeasured": False}
        detail: dict[str, Any] = {"mode": self.mode, "train_wall_s": round(wall, 3)}
        if self.mode != "off" and wants_measurement(self.mode, verdict.decision):
            verdict = self._measured(verdict, reported, redecide, values, flags, detail)
        budget = self.budget_s()
        if verdict.decision in MEASURABLE and over_budget(wall, budget):
            flags["over_budget"] = True
            verdict = refuse_keep(verdict, f"trained {wall:.0f} s by the runner's clock, over the "
                                           f"{budget:g} s budget")
        values.update({name: int(on) for name, on in flags.items()})
        return Settled(verdict, values, flags, detail)

    def _measured(self, verdict: Verdict, reported: float | None,
                  redecide: Callable[[float], Verdict], values: dict[str, Any], flags: dict[str, bool],
                  detail: dict[str, Any]) -> Verdict:
        if self.plan.backend != "local":
            flags["unmeasured"] = True
            return Verdict(verdict.decision, f"{verdict.reason} (printed val_bpb: the cockpit "
                           f"cannot measure {self.plan.backend} runs yet)", verdict.is_baseline,
                           verdict.near_miss, verdict.delta, verdict.margin)
        m = self.measure()
        values["trusted_eval_s"] = round(m.seconds, 3)
        detail.update(m.detail, measured=m.val_bpb, reported=reported, error=m.error,
                      causal=m.causal, trusted_eval_s=round(m.seconds, 3))
        if m.error or m.val_bpb is None:
            flags["unmeasured"] = True
            values["val_bpb"] = None
            return refuse_keep(verdict, f"the cockpit could not measure val_bpb itself: {m.error}")
        values["measured_val_bpb"] = m.val_bpb
        if not m.causal:
            flags["non_causal"] = True
            values["val_bpb"] = None
            return refuse_keep(verdict, "the model looks ahead: its predictions change when later "
                                        "tokens change (causality probe)")
        values["val_bpb"] = m.val_bpb
        flags["metric_mismatch"] = metric_mismatch(reported, m.val_bpb,
                                                   self.plan.settings.metric_tolerance)
        settled = redecide(m.val_bpb)
        if flags["metric_mismatch"]:
            printed = "no val_bpb" if reported is None else f"{reported:.6f}"
            settled = Verdict(settled.decision, f"{settled.reason} (measured by the cockpit: "
                              f"{m.val_bpb:.6f}; train.py printed {printed})", settled.is_baseline,
                              settled.near_miss, settled.delta, settled.margin)
        return settled

    # --- the evaluator process -------------------------------------------------------------

    def _inputs(self) -> tuple[Path, Path]:
        """Main's committed prepare.py and the measured commit's train.py, in the work dir."""
        prepare = git.file_at(self.plan.main, "HEAD", "prepare.py")
        if prepare is None:
            raise ValueError("main has no committed prepare.py")
        train = git.file_at(self.plan.worktree, self.plan.commit_sha, "train.py")
        if train is None:
            raise ValueError(f"commit {self.plan.commit_sha[:7]} has no train.py")
        self.work.mkdir(parents=True, exist_ok=True)
        (self.work / "prepare.py").write_text(prepare, encoding="utf-8")
        (self.work / "train.py").write_text(train, encoding="utf-8")
        return self.work / "prepare.py", self.work / "train.py"

    def eval_env(self) -> dict[str, str]:
        """Main's eval constants and data ([tool.cockpit.train_env]); AUTORESEARCH_* from the
        agent's environment never reach the evaluator."""
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AUTORESEARCH_", "COCKPIT_"))}
        env.update(self.plan.settings.train_env)
        env.update(self._device_env)
        env.update(PYTHONPATH=str(COCKPIT_ROOT), PYTHONUNBUFFERED="1")
        return env

    def measure(self) -> Measurement:
        t0 = time.monotonic()
        if not self.weights.is_file():
            return Measurement(error=f"train.py handed over no weights ({WEIGHTS_ENV}): keep the "
                                     "hand-over lines at the end of train.py")
        try:
            prepare, train = self._inputs()
        except (ValueError, git.GitError, OSError) as exc:
            return Measurement(error=str(exc), seconds=time.monotonic() - t0)
        out = self.work / "result.json"
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "app.run.trusted_eval", "--prepare", str(prepare),
                   "--train", str(train), "--weights", str(self.weights), "--out", str(out)]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            proc = subprocess.Popen(command, cwd=self.work, env=self.eval_env(),
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            problem = self._wait(proc)
        seconds = time.monotonic() - t0
        if problem:
            return Measurement(error=problem, seconds=seconds)
        return read_result(out, proc.returncode, seconds)

    def _wait(self, proc: subprocess.Popen) -> str:
        """Wait for the evaluator, beating the heartbeat; why it was stopped, or ''."""
        deadline = time.monotonic() + EVAL_TIMEOUT_S
        while proc.poll() is None:
            problem = ("the runner was stopped" if self._stopped() else
                       f"the evaluation ran past {EVAL_TIMEOUT_S:g} s"
                       if time.monotonic() > deadline else "")
            if problem:
                with contextlib.suppress(ProcessLookupError):  # its own session and group
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return problem
            self._heartbeat()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=POLL_S)
        return ""


def read_result(path: Path, exit_code: int | None, seconds: float) -> Measurement:
    """The evaluator's JSON, checked: a finite, positive val_bpb and a boolean probe result."""
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Measurement(error=f"the evaluator exited ({exit_code}) without a result",
                           seconds=seconds)
    if not isinstance(result, dict):
        return Measurement(error="the evaluator's result is not an object", seconds=seconds)
    if result.get("error"):
        return Measurement(error=str(result["error"])[:300], seconds=seconds)
    val = finite(result.get("val_bpb"))
    if val is None or val <= 0 or not isinstance(result.get("causal"), bool):
        return Measurement(error=f"the evaluator's result is unusable: {str(result)[:200]}",
                           seconds=seconds)
    detail = {k: result[k] for k in ("eval_tokens", "max_seq_len", "vocab_size", "device",
                                     "seconds") if k in result}
    detail["probe_gap"] = finite(result.get("probe_gap"))
    return Measurement(val_bpb=val, causal=result["causal"], seconds=seconds, detail=detail)
