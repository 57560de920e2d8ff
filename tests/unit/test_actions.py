"""Human actions (app/actions.py) and process identity (app/run/procs.py) on a real ledger and real
processes: kill requests, kill without a runner, pid reuse, reviews, notes, reaping lost runs."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import actions
from app.actions import ActionError
from app.ledger.store import Ledger
from app.run.procs import process_identity, same_process, signal_group_if_same
from runnerhelpers import pid_alive
from waiting import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(tmp_path / "ledger.db") as db:
        yield db


@pytest.fixture
def sleeper():
    """A real process in its own session, like a training child; killed at teardown."""
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    wait_for(lambda: process_identity(proc.pid))
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def live(ledger: Ledger, *, runner_alive: bool, child: subprocess.Popen | None = None,
         child_start: float | None = None, heartbeat_age: float = 0.0) -> int:
    me = os.getpid()
    return ledger.register(
        agent="a1", description="x", status="running",
        runner_pid=me if runner_alive else 999_999_999,
        runner_start=process_identity(me) if runner_alive else 1.0,
        pid=child.pid if child else None,
        pid_start=child_start if child_start is not None else (
            process_identity(child.pid) if child else None),
        started_at=time.time() - heartbeat_age, heartbeat_at=time.time() - heartbeat_age)


# ---------------------------------------------------------------------------
# procs

def test_identity_of_live_dead_and_zombie_processes() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    start = process_identity(proc.pid)
    assert start is not None and same_process(proc.pid, start)
    wait_for(lambda: not pid_alive(proc.pid))  # exited, not yet reaped: a zombie
    assert process_identity(proc.pid) is None and not same_process(proc.pid, start)
    proc.wait()
    me = process_identity(os.getpid())
    assert same_process(os.getpid(), me)
    assert not same_process(os.getpid(), me - 1.0)  # same pid, other start: another process
    assert not same_process(None, me) and not same_process(os.getpid(), None)


def test_signal_group_only_when_the_start_time_matches(sleeper) -> None:
    start = process_identity(sleeper.pid)
    assert not signal_group_if_same(sleeper.pid, start + 5.0, signal.SIGTERM)
    time.sleep(0.2)
    assert sleeper.poll() is None  # a recycled pid would have been spared
    assert signal_group_if_same(sleeper.pid, start, signal.SIGTERM)
    assert sleeper.wait(timeout=5) == -signal.SIGTERM


# ---------------------------------------------------------------------------
# kill

def test_kill_with_a_live_runner_only_records_the_request(ledger, sleeper) -> None:
    exp_id = live(ledger, runner_alive=True, child=sleeper)
    message = actions.request_kill(ledger, exp_id, actor="tui")
    assert "kill requested" in message
    exp = ledger.get(exp_id)
    assert exp.kill_requested_at is not None and exp.status == "running"
    assert sleeper.poll() is None  # the runner, not us, stops its child
    kill = ledger.events(exp_id, kind="kill")
    assert len(kill) == 1 and kill[0].actor == "tui" and kill[0].detail["runner_alive"] is True


def test_kill_without_runner_stops_the_child_group_and_marks_killed(ledger, sleeper) -> None:
    exp_id = live(ledger, runner_alive=False, child=sleeper)
    message = actions.request_kill(ledger, exp_id, grace_s=2)
    assert "stopped its process group" in message
    assert sleeper.wait(timeout=5) == -signal.SIGTERM
    exp = ledger.get(exp_id)
    assert (exp.status, exp.decision) == ("finished", "killed")
    [kill] = ledger.events(exp_id, kind="kill")  # the audit says who was there to do it
    assert kill.detail["runner_alive"] is False


def test_kill_without_runner_signals_nothing_when_the_pid_was_reused(ledger, sleeper) -> None:
    exp_id = live(ledger, runner_alive=False, child=sleeper,
                  child_start=process_identity(sleeper.pid) - 30.0)
    message = actions.request_kill(ledger, exp_id, grace_s=1)
    assert "signalled nothing" in message
    time.sleep(0.3)
    assert sleeper.poll() is None  # not ours any more: left alone
    assert ledger.get(exp_id).decision == "killed"


def test_kill_refuses_finished_and_unknown_experiments(ledger) -> None:
    exp_id = ledger.register(status="finished", decision="keep")
    with pytest.raises(ActionError, match="not running"):
        actions.request_kill(ledger, exp_id)
    with pytest.raises(ActionError, match="no experiment #42"):
        actions.request_kill(ledger, 42)


# ---------------------------------------------------------------------------
# review

def test_approve_and_reject_a_pending_candidate_once(ledger) -> None:
    a = ledger.register(status="finished", decision="pending", review="pending", val_bpb=0.9)
    b = ledger.register(status="finished", decision="pending", review="pending", val_bpb=0.9)
    assert "approved" in actions.approve(ledger, a)
    assert "rejected" in actions.reject(ledger, b)
    assert (ledger.get(a).decision, ledger.get(a).review) == ("keep", "approved")
    assert (ledger.get(b).decision, ledger.get(b).review) == ("discard", "rejected")
    with pytest.raises(ActionError, match="not awaiting review"):
        actions.reject(ledger, a)
    assert [e.kind for e in ledger.events(a)] == ["register", "approve"]
    assert ledger.best().id == a


def test_review_of_a_row_that_is_not_pending_is_refused(ledger) -> None:
    exp_id = ledger.register(status="finished", decision="keep")
    with pytest.raises(ActionError, match="not under review"):
        actions.approve(ledger, exp_id)


# ---------------------------------------------------------------------------
# notes

def test_notes_need_text_and_a_real_experiment(ledger) -> None:
    exp_id = ledger.register(agent="a1", status="finished", decision="discard")
    note = actions.add_note(ledger, "  warmup hurts at depth 12  ", exp_id=exp_id, actor="a1")
    [saved] = ledger.notes(experiment_id=exp_id)
    assert (saved.id, saved.text, saved.agent, saved.author) == (note, "warmup hurts at depth 12", "a1", "a1")
    with pytest.raises(ActionError, match="needs some text"):
        actions.add_note(ledger, "  \n ")
    with pytest.raises(ActionError, match="no experiment #99"):
        actions.add_note(ledger, "about nothing", exp_id=99)
    assert len(ledger.notes()) == 1


# ---------------------------------------------------------------------------
# reap_lost

def test_reap_marks_only_stale_runs_whose_runner_is_gone(ledger) -> None:
    dead_stale = live(ledger, runner_alive=False, heartbeat_age=30)
    dead_fresh = live(ledger, runner_alive=False, heartbeat_age=0)
    alive_stale = live(ledger, runner_alive=True, heartbeat_age=30)
    assert actions.reap_lost(ledger, stale_after_s=5) == [dead_stale]
    assert ledger.get(dead_stale).decision == "lost" and "gone" in ledger.get(dead_stale).reason
    assert ledger.get(dead_fresh).status == "running"
    assert ledger.get(alive_stale).status == "running"
    assert actions.reap_lost(ledger, stale_after_s=5) == []  # once only
    assert [e.detail["decision"] for e in ledger.events(dead_stale, kind="decide")] == ["lost"]


def test_reap_of_a_run_without_a_recorded_runner_says_so_not_pid_none(ledger) -> None:
    exp_id = ledger.register(agent="a1", description="x", status="running",
                             started_at=time.time() - 30, heartbeat_at=time.time() - 30)
    assert actions.reap_lost(ledger, stale_after_s=5) == [exp_id]
    reason = ledger.get(exp_id).reason
    assert "None" not in reason and "no pid recorded" in reason


def test_reap_never_writes_through_a_read_only_ledger(ledger) -> None:
    exp_id = live(ledger, runner_alive=False, heartbeat_age=30)
    with Ledger(ledger.path, read_only=True) as ro:
        assert actions.reap_lost(ro) == []
    assert ledger.get(exp_id).status == "running"
