"""`cockpit run`: one experiment end to end.

Checks the worktree, registers the run, starts train.py on a backend, tees its raw output to
`<ledger dir>/logs/<id>.log` and the worktree's `run.log`, parses it live into step metrics and a
heartbeat, honours kill requests, the hard timeout and signals, then decides (app/policy.py) and
reports to the agent (app/run/report.py).
"""
from __future__ import annotations

import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.comparability import comparability_key, comparability_problem
from app.ledger.store import Ledger, LedgerBusy, StepRow, finite, summary_columns
from app.logs.parse import StreamParser, summary_problems
from app.logs.steps import StepRecord
from app.policy import Outcome, RunFacts, Verdict, adjust, decide, integrity_reasons, is_contended, run_flags
from app.run.backends import Run, start_run
from app.run.context import Context, constants_mismatch, gather, tok_per_sec
from app.run.lease import RunLease
from app.run.plan import Plan, RunInfraError, refuse_if_running_in
from app.run.report import RunResult, build_result
from app.run.trusted import Trust
from app.safeguards import hold_implausible, plausibility

HEARTBEAT_S = 1.0  # step rows and heartbeat at most this often
KILL_POLL_S = 0.5  # how often the runner looks for a kill request
LEFTOVER_WAIT_S = 2.0  # train.py exited but its output stays open this long: kill its group
GIVE_UP_S = 15.0  # after a stop, stop waiting for the output to close after this long
REVIEW_POLL_S = 0.5
WRITE_ATTEMPTS = 10  # a final ledger write waits out a lock this many busy timeouts
_EOF = object()
INF = float("inf")


@dataclass
class Supervised:
    exit_code: int | None
    stop_reason: str | None  # killed | timeout | signal | None
    stream_error: str = ""


def _pump(run: Run, out: queue.Queue) -> None:
    """Reader thread: move output chunks from the backend to the runner's queue."""
    try:
        for chunk in run.chunks():
            out.put(chunk)
    except Exception as exc:  # a broken Modal stream: the run ends as a crash, with the reason
        out.put(exc)
    out.put(_EOF)


class Runner:
    """Runs one planned experiment against an open ledger."""

    def __init__(self, plan: Plan, ledger: Ledger, announce: Callable[[str], None] = print) -> None:
        self.plan = plan
        self.ledger = ledger
        self.announce = announce
        self.parser = StreamParser()
        self.signal_received: int | None = None
        self.exp_id = 0
        self._t0 = 0.0
        self._unsent: StepRecord | None = None
        self.write_trouble = ""  # why ledger writes had to wait, for the record
        self._skipped_beats = 0

    # --- lifecycle --------------------------------------------------------------------------

    def run(self) -> RunResult:
        plan = self.plan
        self.exp_id = self.ledger.register(
            guard=lambda ledger: refuse_if_running_in(ledger, plan.worktree), **plan.register_fields())
        self.trust = Trust(plan, self.ledger.path.parent, self.exp_id)
        logs = self.ledger.path.parent / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{self.exp_id}.log"
        previous = self._install_signal_handlers()
        lease = RunLease(self.ledger, plan.pool, self.exp_id, plan.agent, self.announce)
        try:
            try:
                with open(log_path, "wb") as log, open(plan.worktree / "run.log", "wb") as runlog:
                    # the time budget starts once the devices are ours, never while queued
                    stopped = lease.acquire(lambda poll: self._stop_reason(0.0, INF, poll))
                    supervised = Supervised(None, stopped) if stopped else \
                        self._launch_and_supervise(log_path, (log, runlog), lease.env)
                return self._finish(supervised, log_path, lease.release)
            finally:
                lease.release()
        finally:
            self._restore_signal_handlers(previous)

    def _launch_and_supervise(self, log_path: Path, sinks: tuple,
                              lease_env: dict[str, str]) -> Supervised:
        plan = self.plan
        try:
            run = start_run(plan.backend, plan.worktree,
                            {**plan.env, **lease_env, **self.trust.child_env(lease_env)},
                            plan.timeout_s)
        except Exception as exc:
            self.ledger.update(self.exp_id, event="decide", detail={"decision": "lost"},
                               status="finished", decision="lost", finished_at=time.time(),
                               log_path=str(log_path),
                               reason=f"{plan.backend} backend failed to start: {exc}")
            raise RunInfraError(f"{plan.backend} backend failed to start: {exc}") from exc
        self._t0 = time.time()
        self.trust.started()
        self.ledger.update(self.exp_id, event="start",
                           detail={"backend": plan.backend, "ident": run.ident},
                           status="running", started_at=self._t0, heartbeat_at=self._t0,
                           pid=run.pid, pid_start=run.pid_start, log_path=str(log_path),
                           modal_call_id=run.ident if plan.backend == "modal" else "")
        where = f"pid {run.pid}" if run.pid else f"Modal call {run.ident}"
        self.announce(f"cockpit run #{self.exp_id} started on {plan.backend} ({where}); "
                      f"log: {log_path}")
        try:
            return self._supervise(run, sinks)
        finally:
            if not run.exited():  # an error in the loop: never leave train.py running
                run.stop(0.0)

    def _supervise(self, run: Run, sinks: tuple) -> Supervised:
        chunks: queue.Queue = queue.Queue()
        threading.Thread(target=_pump, args=(run, chunks), daemon=True,
                         name=f"cockpit-run-{self.exp_id}").start()
        deadline = time.monotonic() + self.plan.timeout_s
        next_beat = next_poll = 0.0
        stop_reason: str | None = None
        stopped_at = exited_at = None
        stream_error = ""
        eof = False
        while not (eof and run.exited()):
            try:
                item = chunks.get(timeout=0.05 if eof else 0.2)
            except queue.Empty:
                item = None
            if item is _EOF:
                eof = True
            elif isinstance(item, Exception):
                stream_error = f"output stream failed: {item}"
            elif item:
                self._consume(item, sinks)
            now = time.monotonic()
            if now >= next_beat:
                self._heartbeat()
                next_beat = now + HEARTBEAT_S
            if stop_reason is None:
                stop_reason = self._stop_reason(now, deadline, now >= next_poll)
                if now >= next_poll:
                    next_poll = now + KILL_POLL_S
                if stop_reason:
                    self.announce(f"cockpit run #{self.exp_id}: stopping ({stop_reason})")
                    run.stop(self.plan.settings.kill_grace_s)
                    stopped_at = time.monotonic()
            elif stopped_at is not None and time.monotonic() - stopped_at > GIVE_UP_S:
                break
            if run.exited() and not eof:
                exited_at = exited_at or now
                if now - exited_at > LEFTOVER_WAIT_S:  # something in its group holds the output
                    run.stop(0.0)
                    if now - exited_at > GIVE_UP_S:
                        break
        exit_code = self._exit_code(run)
        self._heartbeat()
        return Supervised(exit_code, stop_reason, stream_error)

    def _exit_code(self, run: Run) -> int | None:
        if not run.exited():
            return None
        try:
            return run.wait()
        except Exception:  # a Modal call that vanished: no exit code
            return None

    def _stop_reason(self, now: float, deadline: float, poll: bool) -> str | None:
        if self.signal_received is not None:
            return "signal"
        if now >= deadline:
            return "timeout"
        if poll and self.ledger.get(self.exp_id).kill_requested_at is not None:
            return "killed"
        return None

    # --- output ----------------------------------------------------------------------------

    def _consume(self, data: bytes, sinks: tuple) -> None:
        for sink in sinks:
            sink.write(data)
            sink.flush()
        records = self.parser.feed(data)
        if records:
            self._unsent = records[-1]
            self.trust.saw_steps()

    def _heartbeat(self) -> None:
        """One transaction a second: the newest step (if any) plus the live columns."""
        step = self._unsent
        self._unsent = None
        rows = [] if step is None else [StepRow(
            step=step.step, t=round(time.time() - self._t0, 3), progress_pct=step.progress_pct,
            loss=step.loss, lrm=step.lrm, dt_ms=step.dt_ms, tok_per_sec=step.tok_per_sec,
            mfu_pct=step.mfu_pct, remaining_s=step.remaining_s)]
        live: dict[str, Any] = {}
        if step is not None:
            live = {"progress_pct": step.progress_pct, "last_loss": finite(step.loss),
                    "remaining_s": step.remaining_s}
        try:
            self.ledger.add_steps(self.exp_id, rows, **live)
        except LedgerBusy as exc:  # locked past the busy timeout: the next beat retries
            self._unsent = self._unsent or step
            self._skipped_beats += 1
            self._note_lock(exc)

    def _note_lock(self, exc: LedgerBusy) -> None:
        self.write_trouble = (f"{exc}; "
                              f"{self._skipped_beats} heartbeat(s) skipped, writes retried")
        self.announce(f"cockpit run #{self.exp_id}: {self.write_trouble}")

    def _retry(self, write: Callable[[], Any]) -> Any:
        """A write that must land: each try waits the busy timeout; the cause is kept."""
        for attempt in range(WRITE_ATTEMPTS):
            try:
                return write()
            except LedgerBusy as exc:
                if attempt == WRITE_ATTEMPTS - 1:
                    raise RunInfraError(f"run #{self.exp_id} could not be recorded: {exc} "
                                        f"(after {attempt + 1} tries); its log is kept") from exc
                self._note_lock(exc)
                time.sleep(min(2.0, 0.1 * 2 ** attempt))
        return None

    # --- decision --------------------------------------------------------------------------

    def _finish(self, supervised: Supervised, log_path: Path,
                release: Callable[[], None]) -> RunResult:
        """Decide (measuring on the leased devices first where wanted), release them, record."""
        plan = self.plan
        parsed = self.parser.finish()
        summary = parsed.summary
        val_bpb = finite(summary.get("val_bpb")) if summary else None
        constants = {k: summary.get(k) for k in ("time_budget", "max_seq_len", "eval_tokens",
                                                 "vocab_size")} if summary else {}
        constants = {k: v for k, v in constants.items() if finite(v) is not None}
        if summary and comparability_key(summary):
            constants["compare_key"] = comparability_key(summary)
        context = gather(self.ledger, exp_id=self.exp_id, branch=plan.branch, tag=plan.tag,
                         main_branch=plan.main_branch, constants=constants)

        def verdict_on(val: float | None) -> Verdict:
            outcome = Outcome(exit_code=supervised.exit_code, val_bpb=val,
                              has_summary=summary is not None, failed=parsed.failed,
                              timed_out=supervised.stop_reason == "timeout",
                              killed=supervised.stop_reason in ("killed", "signal"))
            verdict = decide(outcome, _val(context.branch_best), context.sigma, plan.policy)
            return self._adjust(verdict, supervised, summary, context, parsed.failed, val)

        settled = self.trust.settle(verdict_on(val_bpb), val_bpb, verdict_on, self._heartbeat,
                                    lambda: self.signal_received is not None)
        release()
        measured = settled.values.get("measured_val_bpb")  # judged instead of the print
        check = plausibility(_raw_val(summary) if measured is None else measured,
                             _val(context.branch_baseline or context.tag_baseline
                                  or context.main_best), plan.policy.implausible_ratio)
        verdict = hold_implausible(settled.verdict, check)
        flags = {**self._flags(verdict, summary, context), "implausible": bool(check),
                 **settled.flags}
        decision = verdict.decision
        review = None
        if decision == "pending" or self._gated(verdict):
            decision, review = "pending", "pending"
        values: dict[str, Any] = {
            "status": "finished", "decision": decision, "review": review, "reason": verdict.reason,
            "exit_code": supervised.exit_code, "finished_at": time.time(), "delta": verdict.delta,
            "margin": verdict.margin, "near_miss": int(verdict.near_miss),
            "contended": int(flags["contended"]), "integrity": int(flags["integrity"]),
            "implausible": int(flags["implausible"]),
            "not_comparable": int(flags["not_comparable"])}
        if summary:
            values.update(summary_columns(summary))
        values.update(settled.values)
        if decision not in ("keep", "discard", "repeat", "pending"):
            values["crash_tail"] = "\n".join(parsed.tail)
        if self.write_trouble:
            values["reason"] = f"{verdict.reason}; {self.write_trouble}"
        self._retry(lambda: self.ledger.update(
            self.exp_id, event="finish", detail={"exit_code": supervised.exit_code,
                                                 "decision": decision, "stop": supervised.stop_reason,
                                                 "ledger_trouble": self.write_trouble,
                                                 "trusted": settled.detail}, **values))
        self._retry(lambda: self.ledger.event("decide", experiment_id=self.exp_id, actor="runner",
                                              decision=decision, reason=verdict.reason))
        if review == "pending":
            decision, review = self._await_review(implausible=bool(check))
        return build_result(self.ledger, plan, self.exp_id, context, verdict, decision, review,
                            parsed.tail, str(log_path), flags)

    def _adjust(self, verdict: Verdict, supervised: Supervised, summary: dict | None,
                context: Context, failed: bool, val_bpb: float | None) -> Verdict:
        """The policy's rules on top of decide(), with what this run observed."""
        plan, baseline = self.plan, context.tag_baseline
        received = self.signal_received if supervised.stop_reason == "signal" else None
        facts = RunFacts(
            signal_name=signal.Signals(received).name if received else None,
            timeout_s=plan.timeout_s, stream_error=supervised.stream_error, failed=failed,
            exit_code=supervised.exit_code,
            summary_problems=summary_problems(summary) if summary is not None else [],
            integrity=integrity_reasons(plan.integrity_reasons, plan.tag,
                                        baseline.id if baseline else None,
                                        constants_mismatch(summary or {}, baseline)),
            repeat_of=((plan.repeat_of.id, plan.repeat_of.val_bpb or 0.0)
                       if plan.repeat_of is not None else None),
            unlike=self._unlike(summary, context),
            val_bpb=val_bpb or 0.0)
        return adjust(verdict, facts)

    @staticmethod
    def _unlike(summary: dict | None, context: Context) -> str | None:
        """Why the run is measured unlike the branch best (else the tag's first keep); None: alike."""
        reference = context.branch_best or context.tag_baseline
        return comparability_problem(comparability_key(summary or {}),
                                     reference.compare_key if reference else None,
                                     reference.id if reference else None)

    def _flags(self, verdict: Verdict, summary: dict | None, context: Context) -> dict[str, Any]:
        base = context.branch_baseline
        contended = bool(summary and base and base.id != self.exp_id and is_contended(
            finite(summary.get("num_steps")), tok_per_sec(summary), base.num_steps,
            tok_per_sec(base), self.plan.policy.contended_frac))
        return run_flags(verdict, contended=contended,
                         plan_integrity=bool(self.plan.integrity_reasons))

    def _gated(self, verdict: Verdict) -> bool:
        return (self.plan.review == "gate" and verdict.decision == "keep"
                and not verdict.is_baseline)

    def _await_review(self, implausible: bool = False) -> tuple[str, str]:
        """Wait for a human verdict; after review_timeout_s the automatic rule stands: keep, or
        discard for an implausible value (never kept without a human)."""
        timeout = self.plan.settings.review_timeout_s
        fallback = "discard" if implausible else "keep"
        self.announce(f"cockpit run #{self.exp_id}: keep-candidate awaits review: "
                      f"`cockpit approve {self.exp_id}` or `cockpit reject {self.exp_id}` "
                      f"(automatic {fallback} in {timeout:.0f} s)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.signal_received is None:
            exp = self.ledger.get(self.exp_id)
            if exp.review != "pending":
                return exp.decision or "keep", exp.review or ""
            time.sleep(REVIEW_POLL_S)
        why = ("implausible and not approved: not kept" if implausible
               else "automatic rule keeps it")
        if self.signal_received is None and self.ledger.transition(
                self.exp_id, {"review": "pending"}, event="review_timeout", actor="runner",
                detail={"after_s": timeout, "decision": fallback}, decision=fallback,
                review="expired", reason=f"review timed out after {timeout:.0f} s: {why}"):
            return fallback, "expired"
        exp = self.ledger.get(self.exp_id)
        return exp.decision or "pending", exp.review or ""

    # --- signals ---------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[sig] = signal.signal(sig, self._on_signal)
        return previous

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.signal_received = signum

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _val(exp: Any) -> float | None:
    return None if exp is None else exp.val_bpb


def _raw_val(summary: dict | None) -> float | None:
    """The printed val_bpb as a number, NaN and infinities included (plausibility judges them)."""
    value = (summary or {}).get("val_bpb")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def exit_status(signal_received: int | None) -> int:
    """0 whatever the decision (the agent reads it); 128+signal when the runner was signalled."""
    return 128 + signal_received if signal_received else 0

