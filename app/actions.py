"""Human actions on experiments, shared by the `cockpit` CLI and the TUI.

Each action writes a request or a verdict to the ledger, with its audit event, in one
compare-and-set transaction, so a human and a runner racing on one row never both win. The
resource owner carries the request out: the runner stops its own child when it sees a kill
request. Only when the runner is gone does an action touch a process itself, and then only
after checking the recorded start time (procs.py).
"""
from __future__ import annotations

import time

from app.errors import UsageError
from app.ledger.limits import TEXT_CAP, over_cap
from app.ledger.store import LIVE_STATUSES, Experiment, Ledger, LedgerError
from app.observe.runlog import OBSERVED
from app.run.lease import reclaim_lost
from app.run.procs import same_process, stop_if_same


class ActionError(UsageError):
    """An action that cannot be done; the message is one line for the human."""


def _experiment(ledger: Ledger, exp_id: int) -> Experiment:
    try:
        return ledger.get(exp_id)
    except LedgerError as exc:
        raise ActionError(str(exc)) from exc


def owner_of(ledger: Ledger, exp_id: int) -> str:
    """The agent whose experiment it is ("" if none)."""
    return _experiment(ledger, exp_id).agent


def request_kill(ledger: Ledger, exp_id: int, actor: str = "human", *,
                 grace_s: float = 5.0) -> str:
    """Ask the runner of a live experiment to stop it; if the runner is gone, stop the recorded
    child ourselves (only if its start time still matches) and mark the experiment killed.

    An observed run (started by a vanilla agent itself) has no runner of ours to honour a
    request: the process writing its run.log is stopped the same careful way.
    """
    exp = _experiment(ledger, exp_id)
    if not exp.is_live:
        raise ActionError(f"#{exp_id} is not running (it is {exp.effective_decision})")
    observed = exp.backend == OBSERVED
    runner_alive = not observed and same_process(exp.runner_pid, exp.runner_start)
    if not ledger.transition(exp_id, {"status": LIVE_STATUSES}, event="kill", actor=actor,
                             detail={"runner_alive": runner_alive}, kill_requested_at=time.time()):
        raise ActionError(f"#{exp_id} finished before the kill request landed")
    if runner_alive:
        return f"kill requested for #{exp_id}: its runner (pid {exp.runner_pid}) stops it within 1 s"
    pid, start = (exp.runner_pid, exp.runner_start) if observed else (exp.pid, exp.pid_start)
    signalled = stop_if_same(pid, start, grace_s)
    if not signalled:
        what = "its training process is already gone, signalled nothing"
    elif observed:
        what = f"stopped the process writing its run.log (pid {pid})"
    else:
        what = f"stopped its process group (pid {pid})"
    if exp.modal_call_id:
        what += f"; Modal call {exp.modal_call_id} ends with its own timeout"
    why = "the agent started it without `cockpit run`" if observed else "the runner was gone"
    ledger.transition(exp_id, {"status": LIVE_STATUSES}, event="decide", actor=actor,
                      detail={"decision": "killed", "runner_alive": False, "signalled": signalled},
                      status="finished", decision="killed", finished_at=time.time(),
                      reason=f"killed by {actor}; {why}, {what}")
    return f"#{exp_id} killed: {why}, {what}"


def _review(ledger: Ledger, exp_id: int, actor: str, verdict: str, decision: str) -> str:
    exp = _experiment(ledger, exp_id)
    if exp.review != "pending":
        state = exp.review or "not under review"
        raise ActionError(f"#{exp_id} is not awaiting review (review: {state})")
    event = "approve" if verdict == "approved" else "reject"
    if not ledger.transition(exp_id, {"review": "pending"}, event=event, actor=actor,
                             detail={"decision": decision}, review=verdict, decision=decision,
                             reason=f"{verdict} by {actor}"):
        raise ActionError(f"#{exp_id} was decided by someone else a moment ago")
    return f"#{exp_id} {verdict} ({decision})"


def approve(ledger: Ledger, exp_id: int, actor: str = "human") -> str:
    """A pending keep-candidate becomes a keep; a kept row from a results.tsv (the agent's word)
    becomes a best that live runs are compared with."""
    exp = _experiment(ledger, exp_id)
    if exp.is_foreign and exp.decision == "keep" and not exp.review:
        if not ledger.transition(exp_id, {"decision": "keep", "review": None}, event="approve",
                                 actor=actor, detail={"decision": "keep", "foreign": True},
                                 review="approved", reason=f"approved by {actor}: {exp.reason}"):
            raise ActionError(f"#{exp_id} changed a moment ago; look again")
        return f"#{exp_id} approved: its val_bpb now counts as a best on {exp.branch or exp.tag}"
    return _review(ledger, exp_id, actor, "approved", "keep")


def reject(ledger: Ledger, exp_id: int, actor: str = "human") -> str:
    """A pending keep-candidate becomes a discard (the agent resets its commit)."""
    return _review(ledger, exp_id, actor, "rejected", "discard")


def add_note(ledger: Ledger, text: str, exp_id: int | None = None, actor: str = "human",
             agent: str = "") -> int:
    """A memory for the agents and the human: free text, optionally about one experiment."""
    text = text.strip()
    if not text:
        raise ActionError("a note needs some text")
    if over_cap(text):
        raise ActionError(f"the note is {len(text.encode())} bytes; at most {TEXT_CAP} are "
                          "stored: split it, or write the details to a file and note its path")
    if exp_id is not None:
        _experiment(ledger, exp_id)
    return ledger.add_note(text, experiment_id=exp_id, agent=agent, author=actor)


def reap_lost(ledger: Ledger, stale_after_s: float = 5.0) -> list[int]:
    """Mark `lost` every live experiment whose heartbeat is stale and whose runner is dead, and
    return the GPU leases of dead runners to the pool."""
    if ledger.read_only:
        return []
    reclaim_lost(ledger)
    now = time.time()
    lost = []
    for exp in ledger.live():
        last_seen = exp.heartbeat_at or exp.started_at or exp.created_at
        if now - last_seen < stale_after_s or same_process(exp.runner_pid, exp.runner_start):
            continue
        runner = f"runner (pid {exp.runner_pid})" if exp.runner_pid else "runner (no pid recorded)"
        reason = f"{runner} is gone; last heartbeat {now - last_seen:.0f} s ago"
        if ledger.transition(exp.id, {"status": LIVE_STATUSES, "heartbeat_at": exp.heartbeat_at},
                             event="decide", actor="cockpit",
                             detail={"decision": "lost", "runner_pid": exp.runner_pid},
                             status="finished", decision="lost", finished_at=now, reason=reason):
            lost.append(exp.id)
    return lost
