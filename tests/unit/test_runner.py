"""`cockpit run` end to end: real git worktrees, real SQLite, a real training subprocess.

Most runs go through app.cli.main in this process (fast); what needs process boundaries (kill,
SIGKILL, SIGTERM, the review gate) starts `cockpit` as its own process.
"""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from app import actions
from app.ledger.store import Ledger, LedgerError
from gitrepo import commit_file, git
from runnerhelpers import (
    REPO_ROOT,
    agent_worktree,
    cli,
    cockpit_env,
    make_project,
    pid_alive,
    set_constant,
    start_cockpit,
)
from waiting import wait_for


def run(wt: Path, *args: str, message: str = "try") -> tuple[int, str, str]:
    return cli("run", "-m", message, *args, cwd=wt)


def run_json(wt: Path, *args: str, message: str = "try") -> dict:
    code, out, err = run(wt, "--json", *args, message=message)
    assert code == 0, err
    return json.loads(out)


def ledger(p: SimpleNamespace) -> Ledger:
    return Ledger(p.db)


def peek(p: SimpleNamespace, query):
    """`query(ledger)` on a read-only connection; None while the ledger is not there yet."""
    try:
        with Ledger(p.db, read_only=True) as db:
            return query(db)
    except LedgerError:
        return None


# ---------------------------------------------------------------------------
# Decisions

def test_baseline_keep_improve_discard_with_tee_steps_and_events(project) -> None:
    code, out, err = run(project.wt, message="baseline")
    assert code == 0, err
    assert "KEEP" in out and "baseline" in out and "nothing to do" in out
    set_constant(project.wt, "VAL_BPB", 0.98)
    better = run_json(project.wt, message="lower bpb")
    assert better["decision"] == "keep"
    assert better["delta_vs_branch"] == pytest.approx(-0.01)
    assert better["branch_best"]["id"] == 1
    assert better["tag"] == "t1" and better["agent"] == "alice"
    set_constant(project.wt, "VAL_BPB", 0.9815)
    worse = run_json(project.wt, message="slightly worse")
    assert worse["decision"] == "discard"
    assert worse["git_action"] == "git reset --hard HEAD~1"
    assert "near-miss" in worse["flags"]
    assert worse["delta_vs_branch"] == pytest.approx(0.0015)

    with ledger(project) as db:
        exp = db.get(worse["id"])
        assert (exp.status, exp.decision, exp.near_miss, exp.exit_code) == ("finished", "discard", 1, 0)
        assert exp.commit_sha == git(project.wt, "rev-parse", "HEAD")
        assert exp.num_steps == 6 and exp.time_budget == 300 and exp.device == "cpu"
        assert json.loads(exp.summary_json)["attention"] == "sdpa"
        log = Path(exp.log_path)
        assert log == project.main / ".autoresearch" / "logs" / f"{exp.id}.log"
        raw = log.read_bytes()
        assert raw == (project.wt / "run.log").read_bytes()  # the tee: same raw bytes, \r kept
        assert b"\rstep 00005 (100.0%)" in raw and b"val_bpb:          0.981500" in raw
        steps = db.steps(exp.id)
        assert 1 <= len(steps) <= 6 and steps[-1].loss is not None
        assert [e.kind for e in db.events(exp.id)] == ["register", "start", "finish", "decide"]
        assert db.best(branch="autoresearch/t1-alice").id == better["id"]


@pytest.mark.parametrize("edit, reason", [
    (("EXIT_CODE", 1), "exit code 1"),
    (("FAIL_AT", 2), "FAIL"),
    (("SUMMARY", "none"), "no summary"),
    (("SUMMARY", "nan"), "summary unusable: val_bpb is nan"),
    (("SUMMARY", "missing"), "summary unusable: summary has no num_steps"),
])
def test_crashes_are_decided_with_reason_and_tail(project, edit, reason) -> None:
    set_constant(project.wt, *edit)
    result = run_json(project.wt)
    assert result["decision"] == "crash"
    assert reason in result["reason"]
    assert result["git_action"] == "git reset --hard HEAD~1"
    assert 0 < len(result["tail"]) <= 50
    with ledger(project) as db:
        exp = db.get(result["id"])
        assert exp.crash_tail and len(exp.crash_tail.splitlines()) <= 50
        assert exp.val_bpb is None or exp.val_bpb == pytest.approx(0.99)
        assert exp.status == "finished"


def test_three_crashes_in_a_row_advise_stop_and_rethink(project) -> None:
    set_constant(project.wt, "EXIT_CODE", 1)
    streaks = [run_json(project.wt) for _ in range(3)]
    assert [r["crash_streak"] for r in streaks] == [1, 2, 3]
    assert not streaks[1]["rethink"]
    assert "STOP and rethink" in streaks[2]["rethink"]
    code, out, _ = run(project.wt)
    assert "STOP and rethink: 4 crashes" in out
    set_constant(project.wt, "EXIT_CODE", 0)
    assert run_json(project.wt)["crash_streak"] == 0


def test_repeat_measures_noise_and_the_margin_uses_it(project, monkeypatch) -> None:
    code, out, err = run(project.wt, "--repeat")
    assert code == 2 and "nothing to repeat" in err
    first = run_json(project.wt, message="baseline")
    monkeypatch.setenv("STANDIN_VAL_BPB", "0.985")
    repeat = run_json(project.wt, "--repeat", message="noise")
    monkeypatch.delenv("STANDIN_VAL_BPB")
    assert repeat["decision"] == "repeat" and repeat["repeat_of"] == first["id"]
    assert repeat["git_action"].startswith("nothing to do")
    sigma = abs(0.99 - 0.985) / 2 ** 0.5
    assert repeat["sigma"] == pytest.approx(sigma, rel=1e-6)
    with ledger(project) as db:
        assert db.best(branch="autoresearch/t1-alice").id == first["id"]  # repeat never moves it
    set_constant(project.wt, "VAL_BPB", 0.9850)  # 0.005 better: inside 2 sigma = 0.00707
    within = run_json(project.wt)
    assert within["decision"] == "discard" and "within the margin" in within["reason"]
    assert within["margin"] == pytest.approx(2 * sigma, rel=1e-6)
    git(project.wt, "reset", "--hard", "HEAD~1")
    set_constant(project.wt, "VAL_BPB", 0.9800)  # 0.01 better: beyond the margin
    assert run_json(project.wt)["decision"] == "keep"


def test_eval_constants_unlike_the_tag_baseline_are_flagged_and_not_compared(project, monkeypatch) -> None:
    run_json(project.wt, message="baseline")
    monkeypatch.setenv("AUTORESEARCH_MAX_SEQ_LEN", "256")
    set_constant(project.wt, "VAL_BPB", 0.5)
    result = run_json(project.wt)
    assert result["decision"] == "discard"
    assert "not compared" in result["reason"] and "max_seq_len 256 != 2048" in result["reason"]
    assert "integrity" in result["flags"]
    with ledger(project) as db:
        assert db.get(result["id"]).integrity == 1
        assert db.best(branch="autoresearch/t1-alice").id == 1


@pytest.mark.parametrize("unlike, difference", [
    ({"STANDIN_ATTENTION": "flex"}, "attention flex != sdpa"),
    ({"STANDIN_DEVICE": "cuda", "STANDIN_DEVICE_NAME": "NVIDIA A100-SXM4-80GB"},
     "device NVIDIA A100-SXM4-80GB != cpu"),
])
def test_a_run_measured_unlike_the_branch_best_is_not_comparable_and_never_best(
        project, monkeypatch, unlike, difference) -> None:
    baseline = run_json(project.wt, message="baseline")
    for name, value in unlike.items():
        monkeypatch.setenv(name, value)
    set_constant(project.wt, "VAL_BPB", 0.5)  # far better, but measured on other terms
    result = run_json(project.wt)
    assert result["decision"] == "discard" and "not-comparable" in result["flags"]
    assert result["reason"].startswith(f"not comparable: measured unlike #{baseline['id']} (")
    assert difference in result["reason"]
    assert result["git_action"] == "git reset --hard HEAD~1"
    with ledger(project) as db:
        exp = db.get(result["id"])
        assert exp.not_comparable == 1 and exp.compare_key
        assert exp.compare_key != db.get(baseline["id"]).compare_key
        assert db.best(branch="autoresearch/t1-alice").id == baseline["id"]
        assert db.best(tag="t1").id == baseline["id"]


def test_a_new_tag_on_other_hardware_starts_its_own_series(project, monkeypatch) -> None:
    run_json(project.wt, message="cpu baseline")
    gpu = agent_worktree(project.main, "bob", tag="t2")
    monkeypatch.setenv("STANDIN_DEVICE", "cuda")
    monkeypatch.setenv("STANDIN_DEVICE_NAME", "NVIDIA H100 80GB HBM3")
    first = run_json(gpu, message="gpu baseline")
    assert first["decision"] == "keep" and "not-comparable" not in first["flags"]
    set_constant(gpu, "VAL_BPB", 0.98)
    assert run_json(gpu)["decision"] == "keep"
    other = agent_worktree(project.main, "carol", tag="t2")  # a fresh branch of t2 on the CPU
    monkeypatch.setenv("STANDIN_DEVICE", "cpu")
    monkeypatch.setenv("STANDIN_DEVICE_NAME", "cpu model")
    result = run_json(other, message="cpu baseline in a GPU tag")
    assert result["decision"] == "discard" and "not-comparable" in result["flags"]
    assert "device cpu != NVIDIA H100 80GB HBM3" in result["reason"]
    constants = "time_budget=300 max_seq_len=2048 eval_tokens=20971520 vocab_size=8192"
    for command in ("best", "report"):
        code, out, _ = cli(command, cwd=project.main)
        assert code == 0
        assert f"measured under {constants} | NVIDIA H100 80GB HBM3 | sdpa" in out  # the tags' keys differ
        assert f"measured under {constants} | cpu | sdpa" in out
    code, out, _ = cli("status", str(result["id"]), cwd=project.main)
    assert "not_comparable" in out and "not comparable: measured unlike" in out


@pytest.mark.parametrize("missing", [{"STANDIN_ATTENTION": ""},
                                     {"STANDIN_DEVICE": "cuda", "STANDIN_DEVICE_NAME": ""}])
def test_a_summary_without_the_comparability_keys_is_not_comparable(project, monkeypatch, missing) -> None:
    for name, value in missing.items():
        monkeypatch.setenv(name, value)
    result = run_json(project.wt, message="baseline without keys")
    assert result["decision"] == "discard" and "not-comparable" in result["flags"]
    assert "lacks the comparability keys" in result["reason"]
    with ledger(project) as db:
        assert db.best(branch="autoresearch/t1-alice") is None and db.get(result["id"]).compare_key is None


def test_exit_noise_after_the_summary_is_no_metric(project, monkeypatch) -> None:
    monkeypatch.setenv("STANDIN_EXIT_NOISE", "1")
    result = run_json(project.wt, message="baseline")
    assert result["decision"] == "keep"
    with ledger(project) as db:
        summary = db.get(result["id"]).summary
    assert "nanobind" not in summary and summary["attention"] == "sdpa"


def test_crash_tail_starts_at_the_traceback_and_keeps_the_exception(project, monkeypatch) -> None:
    monkeypatch.setenv("STANDIN_TRACEBACK", "CUDA out of memory (stand-in)")
    monkeypatch.setenv("STANDIN_EXIT_NOISE", "1")
    result = run_json(project.wt)
    assert result["decision"] == "crash"
    assert result["tail"][0] == "Traceback (most recent call last):"
    assert "RuntimeError: CUDA out of memory (stand-in)" in result["tail"]
    code, out, _ = run(project.wt)
    assert "Traceback (most recent call last):" in out
    assert "RuntimeError: CUDA out of memory (stand-in)" in out


def test_contended_run_is_flagged(project, monkeypatch) -> None:
    run_json(project.wt, message="baseline")
    monkeypatch.setenv("STANDIN_STEPS", "3")
    set_constant(project.wt, "VAL_BPB", 0.98)
    result = run_json(project.wt)
    assert "contended" in result["flags"]
    with ledger(project) as db:
        assert db.get(result["id"]).contended == 1


def test_delta_against_main_best(project) -> None:
    code, _, err = run(project.main, message="main baseline")
    assert code == 0, err
    set_constant(project.wt, "VAL_BPB", 0.97)
    result = run_json(project.wt)
    assert result["main_best"]["id"] == 1 and result["main_best"]["branch"] == "main"
    assert result["delta_vs_main"] == pytest.approx(-0.02)
    assert result["decision"] == "keep" and result["branch_best"] is None  # fresh branch: baseline


# ---------------------------------------------------------------------------
# Refusals and bad input: a clear line, nothing registered, nothing changed

def _rows(project) -> int:
    if not project.db.exists():
        return 0
    with ledger(project) as db:
        return len(db.experiments())


def test_refuses_dirty_train_py_and_changed_prepare_py(project) -> None:
    set_constant(project.wt, "VAL_BPB", 0.5, commit=False)
    code, out, err = run(project.wt)
    assert code == 2 and "train.py has uncommitted changes" in err and out == ""
    git(project.wt, "checkout", "--", "train.py")
    commit_file(project.wt, "prepare.py", "MAX_SEQ_LEN = 64\n", "cheat")
    code, _, err = run(project.wt)
    assert code == 2 and "prepare.py differs from main's" in err
    assert _rows(project) == 0
    result = run_json(project.wt, "--allow-prepare-change")
    assert result["decision"] == "discard" and "integrity" in result["flags"]
    assert "prepare.py differs" in result["reason"]


def test_refuses_outside_git_and_on_detached_head(project) -> None:
    plain = project.tmp / "plain"
    plain.mkdir()
    code, _, err = run(plain)
    assert code == 2 and "not inside a git worktree" in err
    git(project.wt, "checkout", "--quiet", "--detach")
    code, _, err = run(project.wt)
    assert code == 2 and "detached" in err
    assert _rows(project) == 0


@pytest.mark.parametrize("damage", ["not sqlite", "newer schema"])
def test_unusable_ledger_is_an_infrastructure_error_and_stays_untouched(project, damage) -> None:
    project.db.parent.mkdir(parents=True, exist_ok=True)
    if damage == "not sqlite":
        project.db.write_bytes(b"this is not a database\n" * 100)
    else:
        conn = sqlite3.connect(project.db)
        conn.execute("PRAGMA user_version = 99")
        conn.close()
    before = project.db.read_bytes()
    code, out, err = run(project.wt)
    assert code == 3 and out == ""
    assert err.startswith("cockpit: ") and len(err.strip().splitlines()) == 1
    assert project.db.read_bytes() == before
    assert not (project.wt / "run.log").exists()  # nothing started


# ---------------------------------------------------------------------------
# Live behaviour, timeout, kill, signals (separate processes)

def _slow_env(project, steps: int = 40, step_s: float = 0.25, **extra: str) -> dict[str, str]:
    return cockpit_env(STANDIN_STEPS=str(steps), STANDIN_STEP_SECONDS=str(step_s),
                       STANDIN_PIDFILE=str(project.tmp / "train.pid"), **extra)


def _running(project) -> SimpleNamespace:
    """Wait until the newest experiment runs and its training pid is known."""
    def ready():
        if not (project.tmp / "train.pid").exists():
            return None
        live = peek(project, lambda db: db.live())
        return live[0] if live and live[0].status == "running" and live[0].pid else None
    exp = wait_for(ready, timeout=30)
    return SimpleNamespace(exp=exp, pid=int((project.tmp / "train.pid").read_text()))


@pytest.mark.slow
def test_live_progress_heartbeat_and_step_rate(project) -> None:
    proc = start_cockpit("run", "-m", "slow", cwd=project.wt, env=_slow_env(project, 14, 0.25))
    live = _running(project)
    beats, progress = set(), []
    while proc.poll() is None:
        with Ledger(project.db, read_only=True) as db:
            exp = db.get(live.exp.id)
        if exp.status == "running":
            beats.add(exp.heartbeat_at)
            progress.append(exp.progress_pct)
        time.sleep(0.3)
    assert proc.returncode == 0, proc.stderr.read()
    assert len(beats) >= 2  # the heartbeat moves while it runs
    seen = [p for p in progress if p is not None]
    assert seen and seen == sorted(seen)
    with Ledger(project.db) as db:
        exp = db.get(live.exp.id)
        steps = db.steps(exp.id)
    duration = exp.finished_at - exp.started_at
    assert 2 <= len(steps) <= duration + 2  # sampled at most about once a second
    assert [s.step for s in steps] == sorted({s.step for s in steps})


def test_hard_timeout_stops_the_run(project, monkeypatch) -> None:
    monkeypatch.setenv("STANDIN_STEPS", "100")
    monkeypatch.setenv("STANDIN_STEP_SECONDS", "0.2")
    monkeypatch.setenv("STANDIN_PIDFILE", str(project.tmp / "train.pid"))
    result = run_json(project.wt, "--timeout", "1.5")
    assert result["decision"] == "timeout" and result["tail"]
    assert result["reason"] == "ran past the hard limit of 1.5 s"
    assert not pid_alive(int((project.tmp / "train.pid").read_text()))


def test_cockpit_kill_stops_a_running_experiment_within_about_a_second(project) -> None:
    proc = start_cockpit("run", "-m", "doomed", cwd=project.wt, env=_slow_env(project))
    live = _running(project)
    code, _, err = run(project.wt, message="twice in one worktree")
    assert code == 2 and f"#{live.exp.id} is already running in this worktree" in err
    code, out, err = cli("kill", str(live.exp.id), cwd=project.wt)
    assert code == 0 and "kill requested" in out, err
    asked = time.monotonic()
    wait_for(lambda: not pid_alive(live.pid), timeout=5)
    assert time.monotonic() - asked < 2.0
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "KILLED" in out
    with Ledger(project.db) as db:
        exp = db.get(live.exp.id)
        assert exp.decision == "killed" and exp.kill_requested_at is not None
        assert [e.kind for e in db.events(exp.id)][-3:] == ["kill", "finish", "decide"]
    code, _, err = cli("kill", str(live.exp.id), cwd=project.wt)
    assert code == 2 and "not running" in err


def test_a_run_registered_meanwhile_in_the_same_worktree_wins(project) -> None:
    """Two `cockpit run`s started together both pass planning; registering re-checks in its
    transaction, so the second is refused before it starts anything."""
    from app.config import load_settings
    from app.run.plan import RunRefused, RunRequest, plan_run
    from app.run.procs import process_identity
    from app.run.runner import Runner

    with Ledger(project.db) as db:
        plan = plan_run(RunRequest("second", worktree=project.wt), db, project.wt, project.main,
                        load_settings(project.main))
        first = db.register(worktree=str(project.wt), status="running", description="first",
                            runner_pid=os.getpid(), runner_start=process_identity(os.getpid()))
        with pytest.raises(RunRefused, match=f"#{first} is already running in this worktree"):
            Runner(plan, db, announce=lambda _: None).run()
        assert [e.id for e in db.experiments()] == [first]
    assert not (project.wt / "run.log").exists()


def test_kill_escalates_to_sigkill_after_the_grace(project) -> None:
    (project.main / ".autoresearch").mkdir(exist_ok=True)
    (project.main / ".autoresearch" / "config.toml").write_text("kill_grace_s = 1.0\n")
    proc = start_cockpit("run", "-m", "stubborn", cwd=project.wt,
                         env=_slow_env(project, STANDIN_IGNORE_TERM="1"))
    live = _running(project)
    cli("kill", str(live.exp.id), cwd=project.wt)
    asked = time.monotonic()
    wait_for(lambda: not pid_alive(live.pid), timeout=8)
    died_by, died_within = time.time(), time.monotonic() - asked
    proc.communicate(timeout=30)
    with Ledger(project.db) as db:
        exp = db.get(live.exp.id)
    assert exp.decision == "killed"
    assert died_by - exp.kill_requested_at >= 1.0  # TERM ignored: it lived through the 1 s grace
    assert died_within < 4.0  # then KILL


@pytest.mark.slow
def test_sigkilled_runner_is_marked_lost_within_ten_seconds(project) -> None:
    proc = start_cockpit("run", "-m", "orphan", cwd=project.wt, env=_slow_env(project))
    live = _running(project)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = time.monotonic()

    def lost():
        cli("status", cwd=project.wt)  # every command reaps lost runs
        with Ledger(project.db) as db:
            return db.get(live.exp.id).decision == "lost"
    wait_for(lost, timeout=10, interval=0.5)
    assert time.monotonic() - killed_at < 10
    with Ledger(project.db) as db:
        assert "runner" in db.get(live.exp.id).reason
    wait_for(lambda: not pid_alive(live.pid), timeout=10)  # the orphan dies on its broken pipe


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signalled_runner_stops_its_child_and_records_killed(project, sig) -> None:
    proc = start_cockpit("run", "-m", "interrupted", cwd=project.wt, env=_slow_env(project))
    live = _running(project)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert not pid_alive(live.pid)
    with Ledger(project.db) as db:
        exp = db.get(live.exp.id)
        assert exp.decision == "killed" and exp.reason == f"the runner received {sig.name}"


# ---------------------------------------------------------------------------
# Review gate

def _gate(project, timeout_s: float = 60) -> None:
    (project.main / ".autoresearch").mkdir(exist_ok=True)
    (project.main / ".autoresearch" / "config.toml").write_text(
        f'review = "gate"\nreview_timeout_s = {timeout_s}\n')


def _pending(project) -> int:
    def find():
        rows = peek(project, lambda db: [e for e in db.experiments() if e.review == "pending"])
        return rows[0].id if rows else None
    return wait_for(find, timeout=30)


@pytest.mark.parametrize("verdict, decision, action", [
    ("approve", "keep", "nothing to do"),
    ("reject", "discard", "git reset --hard HEAD~1"),
])
def test_review_gate_waits_for_the_human(project, verdict, decision, action) -> None:
    _gate(project)
    assert run_json(project.wt, message="baseline")["decision"] == "keep"  # baselines are not gated
    set_constant(project.wt, "VAL_BPB", 0.98)
    proc = start_cockpit("run", "-m", "candidate", "--json", cwd=project.wt, env=cockpit_env())
    exp_id = _pending(project)
    time.sleep(0.5)
    assert proc.poll() is None  # still waiting for the verdict
    code, out, err = cli(verdict, str(exp_id), cwd=project.main)
    assert code == 0, err
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["decision"] == decision and result["git_action"].startswith(action)
    assert result["review"] == ("approved" if verdict == "approve" else "rejected")
    with Ledger(project.db) as db:
        assert db.get(exp_id).decision == decision
        assert verdict in [e.kind for e in db.events(exp_id)]


def test_review_gate_falls_back_to_the_automatic_rule(project) -> None:
    _gate(project, timeout_s=1)
    run_json(project.wt, message="baseline")
    set_constant(project.wt, "VAL_BPB", 0.98)
    result = run_json(project.wt, message="unattended")
    assert result["decision"] == "keep" and result["review"] == "expired"
    code, _, err = cli("approve", str(result["id"]), cwd=project.main)
    assert code == 2 and "not awaiting review" in err


def test_review_mode_auto_never_blocks(project) -> None:
    run_json(project.wt, message="baseline")
    set_constant(project.wt, "VAL_BPB", 0.98)
    started = time.monotonic()
    result = run_json(project.wt, "--review", "auto")
    assert result["decision"] == "keep" and result["review"] is None
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------------
# Modal backend: real up to the SDK call; the SDK boundary is the thin fake of modalfakes.py


def _with_modal_train(project) -> None:
    commit_file(project.wt, "modal_train.py", (REPO_ROOT / "modal_train.py").read_text(), "modal")


def test_modal_backend_run_is_streamed_recorded_and_decided(project, cloud) -> None:
    _with_modal_train(project)
    result = run_json(project.wt, "--backend", "modal", message="on the cloud")
    assert result["decision"] == "keep", result
    assert cloud.loaded and cloud.loaded[0].train.calls  # the real adapter made the call
    source, env, timeout = cloud.loaded[0].train.calls[0]
    assert source == (project.wt / "train.py").read_text() and timeout == 600
    with ledger(project) as db:
        exp = db.get(result["id"])
        assert (exp.backend, exp.modal_call_id, exp.pid) == ("modal", "ap-fake0001", None)
        assert exp.num_steps == 6 and db.steps(exp.id)
        assert b"\rstep 00005" in Path(exp.log_path).read_bytes()


def test_modal_backend_uses_the_configured_gpu_and_train_env(project, cloud, monkeypatch) -> None:
    monkeypatch.setenv("AUTORESEARCH_MODAL_GPU", "placeholder")
    monkeypatch.delenv("AUTORESEARCH_MODAL_GPU")  # restored to unset after the run sets it
    _with_modal_train(project)
    (project.main / ".autoresearch").mkdir(exist_ok=True)
    (project.main / ".autoresearch" / "config.toml").write_text(
        'backend = "modal"\nmodal_gpu = "A100-80GB"\n[train_env]\nAUTORESEARCH_TIME_BUDGET = "42"\n')
    result = run_json(project.wt, message="configured cloud")
    assert result["decision"] == "keep", result
    module = cloud.loaded[0]
    assert module.GPU_TYPE == "A100-80GB"
    _, env, _ = module.train.calls[0]
    assert env["AUTORESEARCH_TIME_BUDGET"] == "42" and env["AUTORESEARCH_MODAL_GPU"] == "A100-80GB"


def test_modal_backend_kill_cancels_the_call(project, cloud) -> None:
    _with_modal_train(project)
    set_constant(project.wt, "NUM_STEPS", 400)  # 400 x 0.05 s: far longer than the test
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(
        result=run(project.wt, "--backend", "modal", "--json", message="cancel me")))
    thread.start()

    def running():
        live = peek(project, lambda db: db.live())
        return live[0] if live and live[0].status == "running" and live[0].heartbeat_at else None
    exp = wait_for(running, timeout=30)
    assert "kill requested" in actions.request_kill(Ledger(project.db), exp.id)
    thread.join(timeout=60)
    code, out, err = outcome["result"]
    assert code == 0, err
    assert json.loads(out)["decision"] == "killed"
    assert cloud.loaded[0].app.stop_calls >= 1


def test_modal_backend_without_credentials_is_an_infrastructure_error(project, monkeypatch) -> None:
    for key in [k for k in os.environ if k.startswith("MODAL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(project.tmp))
    code, out, err = run(project.wt, "--backend", "modal")
    assert code == 3 and "modal setup" in err and out == ""
    assert _rows(project) == 0


# ---------------------------------------------------------------------------
# The real train.py at smoke scale (run it alone with: pytest -k real_train_py)

@pytest.mark.slow
def test_real_train_py_at_smoke_scale_through_cockpit_run(tmp_path, monkeypatch) -> None:
    from corehelpers import SMOKE_CONSTANTS, SMOKE_ENV, run_script, script_env, set_constants, write_corpus

    for key in [k for k in os.environ if k.startswith(("COCKPIT_", "AUTORESEARCH_"))]:
        monkeypatch.delenv(key)
    main = make_project(tmp_path)
    commit_file(main, "prepare.py", (REPO_ROOT / "prepare.py").read_text(), "real prepare.py")
    train = set_constants((REPO_ROOT / "train.py").read_text(), SMOKE_CONSTANTS)
    commit_file(main, "train.py", train, "real train.py, smoke-scale hyperparameters")
    wt = agent_worktree(main, "smoke", tag="cpu")
    cache = tmp_path / "cache"
    prepared = run_script(main / "prepare.py", script_env(cache), "--source",
                          str(write_corpus(tmp_path / "corpus", n_docs=600)), "--num-shards", "2")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    smoke = {**SMOKE_ENV, "AUTORESEARCH_CACHE": str(cache), "AUTORESEARCH_TIME_BUDGET": "4"}
    for key, value in smoke.items():
        monkeypatch.setenv(key, value)

    result = run_json(wt, "--timeout", "400", message="baseline on CPU")  # slow shared CI
    assert result["decision"] == "keep", "\n".join(result["tail"]) or result["reason"]
    assert 0 < result["val_bpb"] < 10
    with Ledger(main / ".autoresearch" / "ledger.db") as db:
        exp = db.get(result["id"])
        assert (exp.time_budget, exp.max_seq_len, exp.vocab_size) == (4, 256, 512)
        assert exp.num_steps and exp.num_steps > 1 and exp.device == "cpu"
        steps = db.steps(exp.id)
        assert steps and all(s.loss is not None and s.loss > 0 for s in steps)
    assert b"\rstep 0000" in (wt / "run.log").read_bytes()
