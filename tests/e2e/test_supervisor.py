"""`cockpit supervise` as a real background process: vanilla runs recorded with no TUI, one per
ledger, restarted after SIGKILL without recording twice, orphaned train.py stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.ledger import leases
from app.ledger.store import Ledger
from app.ledger.supervisor import read_supervisor
from app.run.procs import process_identity
from app.supervisor import process
from runnerhelpers import (
    cockpit,
    cockpit_env,
    make_project,
    pid_alive,
    start_cockpit,
)
from tuiagents import register_agent
from waiting import wait_for

STEP = ("\rstep {s:05d} ({p:.1f}%) | loss: 3.500000 | lrm: 1.00 | dt: 312ms | tok/sec: 52,480 | "
        "mfu: 0.0% | epoch: 1 | remaining: 259s    ")
SUMMARY = ("\n---\nval_bpb:          0.981234\ntraining_seconds: 300.1\ntotal_seconds:    325.9\n"
           "peak_vram_mb:     45060.2\nmfu_percent:      39.80\ntotal_tokens_M:   499.6\n"
           "num_steps:        953\nnum_params_M:     50.3\ndepth:            8\n")


@pytest.fixture
def project(tmp_path: Path):
    """A repository with a ledger and one vanilla agent (a worktree, no pane); its supervisor is
    stopped (and killed, if need be) at the end."""
    main = make_project(tmp_path)
    ledger_path = main / ".autoresearch" / "ledger.db"
    with Ledger(ledger_path) as ledger:
        worktree = register_agent(ledger, main, "ada")
    yield main, ledger_path, worktree
    pid = process.running_pid(ledger_path)
    if pid and pid > 0:
        os.kill(pid, signal.SIGKILL)


def supervise(main: Path, ledger_path: Path) -> subprocess.Popen[str]:
    proc = start_cockpit("--ledger", str(ledger_path), "supervise", cwd=main)
    wait_for(lambda: process.running_pid(ledger_path) == proc.pid and _row(ledger_path), 20)
    return proc


def _row(ledger_path: Path):
    with Ledger(ledger_path, read_only=True) as ledger:
        row = read_supervisor(ledger)
    return row if row is not None and row.state == "running" else None


def observed(ledger_path: Path, finished: bool = False) -> list:
    with Ledger(ledger_path, read_only=True) as ledger:
        runs = [e for e in ledger.experiments() if e.backend == "observed"]
    return [e for e in runs if e.status == "finished"] if finished else runs


def test_no_tui_vanilla_run_recorded_within_2_s_and_a_second_supervisor_refuses(project) -> None:
    main, ledger_path, worktree = project
    first = supervise(main, ledger_path)
    second = cockpit("--ledger", str(ledger_path), "supervise", cwd=main, timeout=60)
    assert second.returncode == 2
    assert f"pid {first.pid}" in second.stderr and "already runs" in second.stderr
    assert cockpit("--ledger", str(ledger_path), "supervise", "--status", cwd=main).returncode == 0

    runlog = worktree / "run.log"
    runlog.write_text("".join(STEP.format(s=s, p=s / 10) for s in range(5)))
    wait_for(lambda: observed(ledger_path), 5)
    with open(runlog, "a") as out:
        out.write(SUMMARY)
    written = time.monotonic()
    done = wait_for(lambda: observed(ledger_path, finished=True), 5)
    latency = time.monotonic() - written
    assert latency < 2.0, f"recorded {latency:.2f} s after the summary line"
    assert done[0].val_bpb == pytest.approx(0.981234) and done[0].agent == "ada"

    stop = cockpit("--ledger", str(ledger_path), "supervise", "--stop", cwd=main)
    assert stop.returncode == 0 and f"pid {first.pid}" in stop.stdout
    assert first.wait(10) == 0
    assert cockpit("--ledger", str(ledger_path), "supervise", "--status", cwd=main).returncode == 1
    with Ledger(ledger_path, read_only=True) as ledger:
        assert read_supervisor(ledger).state == "stopped"


@pytest.mark.slow
def test_sigkilled_supervisor_is_restarted_and_records_nothing_twice(project) -> None:
    main, ledger_path, worktree = project
    first = supervise(main, ledger_path)
    runlog = worktree / "run.log"
    runlog.write_text("".join(STEP.format(s=s, p=s / 10) for s in range(10)))
    wait_for(lambda: observed(ledger_path) and observed(ledger_path)[0].progress_pct, 15)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert process.running_pid(ledger_path) is None

    with open(runlog, "a") as out:  # written while no supervisor runs
        out.write("".join(STEP.format(s=s, p=s / 10) for s in range(10, 20)) + SUMMARY)
    env = cockpit_env(COCKPIT_SUPERVISOR="on")  # what `cockpit` does when it starts
    start = ("import sys; from pathlib import Path; "
             "from app.commands.supervise import ensure_supervisor; "
             "ensure_supervisor(Path(sys.argv[1]))")
    started = subprocess.run([sys.executable, "-c", start, str(ledger_path)], cwd=main, env=env,
                             capture_output=True, text=True, timeout=60, check=True)
    assert "supervisor started in the background" in started.stderr
    second = wait_for(lambda: process.running_pid(ledger_path), 20)
    assert second != first.pid
    done = wait_for(lambda: observed(ledger_path, finished=True), 20)
    assert len(observed(ledger_path)) == 1 and len(done) == 1
    with Ledger(ledger_path, read_only=True) as ledger:
        steps = [s.step for s in ledger.steps(done[0].id)]
        assert len(steps) == len(set(steps)) and steps == sorted(steps)
        assert len(ledger.events(done[0].id, kind="register")) == 1
    log = (main / ".autoresearch" / "supervisor.log").read_text()
    assert f"supervisor started (pid {second})" in log


def test_orphaned_train_py_of_a_dead_runner_is_stopped(project) -> None:
    main, ledger_path, _worktree = project
    runner = subprocess.Popen([sys.executable, "-c", "pass"])  # a runner that has since died
    runner_start = process_identity(runner.pid)
    runner.wait()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             start_new_session=True)  # its train.py, in its own process group
    child_start = wait_for(lambda: process_identity(child.pid))
    try:
        with Ledger(ledger_path) as ledger:
            exp_id = ledger.register(agent="ada", tag="t1", backend="local", status="running",
                                     runner_pid=runner.pid, runner_start=runner_start,
                                     pid=child.pid, pid_start=child_start,
                                     started_at=time.time() - 60, heartbeat_at=time.time() - 60)
        supervise(main, ledger_path)
        assert child.wait(20) == -signal.SIGTERM

        def stopped_events() -> list:
            with Ledger(ledger_path, read_only=True) as ledger:
                return ledger.events(exp_id, kind="orphan-stopped")

        assert [e.detail["pid"] for e in wait_for(stopped_events)] == [child.pid]
        with Ledger(ledger_path, read_only=True) as ledger:
            assert ledger.get(exp_id).decision == "lost"
    finally:
        if pid_alive(child.pid):
            child.kill()


def test_a_gpu_lease_of_a_dead_runner_is_returned_to_the_pool(project) -> None:
    main, ledger_path, _worktree = project
    runner = subprocess.Popen([sys.executable, "-c", "pass"])  # a runner that has since died
    runner_start = process_identity(runner.pid)
    runner.wait()
    with Ledger(ledger_path) as ledger:
        lease_id = leases.enqueue(ledger, pool="local", experiment_id=None, agent="ada",
                                  holder_pid=runner.pid, holder_start=runner_start)
        assert leases.try_acquire(ledger, lease_id, ["0"], 1, lambda lease: False) == ["0"]
    supervise(main, ledger_path)  # nobody runs a command: the supervisor notices

    def state() -> str:
        with Ledger(ledger_path, read_only=True) as ledger:
            return leases.get(ledger, lease_id).state

    assert wait_for(lambda: state() == "released", 15)


def test_an_agent_cannot_stop_the_supervisor(project) -> None:
    main, ledger_path, _worktree = project
    first = supervise(main, ledger_path)
    refused = cockpit("--ledger", str(ledger_path), "supervise", "--stop", cwd=main,
                      env=cockpit_env(COCKPIT_AGENT="ada"))
    assert refused.returncode == 2 and "is for humans" in refused.stderr
    assert process.running_pid(ledger_path) == first.pid
