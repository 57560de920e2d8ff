"""The Modal backend: real up to the Modal SDK call; App.run/stop and Function.remote_gen are a thin fake
that runs modal_train's real train body (stream_experiment) in this process, a directory as the volume."""
from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_modal_train import CREDENTIAL_CASES, alive, case_environ, closed_port, no_token_env, standin

from app.run.backends import modal_backend
from app.run.backends.modal_backend import ModalNotReady, check_modal_ready, start_modal_run
from waiting import wait_for

pytestmark = pytest.mark.timeout(120)  # a broken cancel path must fail, not hang the suite
REPO = Path(__file__).resolve().parents[2]
STEPS_FOREVER = """
    open(os.environ["PID_FILE"], "w").write(str(os.getpid()))
    while True:
        print("\\rstep 00001 (1.0%) | loss: 4.000000 | remaining: 9s    ", end="", flush=True)
        time.sleep(0.05)
"""


def test_run_streams_raw_chunks_and_exits_zero(cloud):
    source = standin("""
        for i in range(3):
            print(f"\\rstep {i:05d} ({i * 30}.0%) | loss: 4.0 | remaining: 1s    ", end="", flush=True)
            time.sleep(0.05)
        budget = os.environ['AUTORESEARCH_TIME_BUDGET']
        print(f"\\n---\\nval_bpb:          1.100000\\ntime_budget:      {budget}")
    """)
    run = start_modal_run(REPO, source, {"AUTORESEARCH_TIME_BUDGET": "5"}, 60)
    assert run.ident == "ap-fake0001"  # known when start returns, for the ledger
    output = "".join(run.chunks())
    assert run.wait() == 0
    assert "\rstep 00001 (30.0%)" in output and "time_budget:      5" in output
    assert cloud.loaded[0].train.calls == [(source, {"AUTORESEARCH_TIME_BUDGET": "5"}, 60.0)]
    assert list(run.chunks()) == []  # a second reader ends at once


def test_cancel_from_another_thread_stops_the_remote_train(cloud, tmp_path):
    run = start_modal_run(REPO, standin(STEPS_FOREVER), {}, 120)
    seen = []

    def read() -> None:
        seen.extend(run.chunks())

    reader = threading.Thread(target=read)
    reader.start()
    wait_for(lambda: any("step" in chunk for chunk in seen), timeout=30)
    run.cancel()
    run.cancel()  # twice is fine
    assert run.wait() == -15
    reader.join(5)
    assert not reader.is_alive()
    assert cloud.loaded[0].app.stop_calls == 1
    assert not alive(int((tmp_path / "train.pid").read_text()))
    run.cancel()  # and after the end


def test_failing_train_exits_one(cloud):
    run = start_modal_run(REPO, standin("print('FAIL')\nsys.exit(1)\n"), {}, 60)
    assert "FAIL" in "".join(run.chunks())
    assert run.wait() == 1


def test_remote_hard_timeout_exits_124(cloud):
    run = start_modal_run(REPO, standin(STEPS_FOREVER), {}, 1.0)
    output = "".join(run.chunks())
    assert run.wait() == 124 and "TIMEOUT" in output


def test_remote_signal_death_is_not_mistaken_for_a_cancel(cloud):
    run = start_modal_run(REPO, standin("os.kill(os.getpid(), 9)\n"), {}, 60)
    list(run.chunks())
    assert run.wait() == 128 + signal.SIGKILL


def test_stuck_remote_call_is_stopped_by_the_local_watchdog(cloud, monkeypatch):
    """No output at all (say, waiting for a GPU): after timeout + STARTUP_GRACE_S the app is stopped."""
    monkeypatch.setattr(modal_backend, "STARTUP_GRACE_S", 0.5)

    def waiting_for_a_gpu(app, *args):
        app.stopped.wait(30)
        raise RuntimeError("the app was stopped")
        yield  # a generator, like the real remote_gen

    cloud.remote_gen = waiting_for_a_gpu
    started = time.monotonic()
    run = start_modal_run(REPO, standin(STEPS_FOREVER), {}, 0.5)
    assert run.wait() == 124 and cloud.loaded[0].app.stop_calls == 1
    assert time.monotonic() - started < 10


def test_sdk_error_is_reported_in_the_output_and_exits_one(cloud):
    def build_fails(app, *args):
        raise RuntimeError("Image build for im-123 failed")
        yield

    cloud.remote_gen = build_fails
    run = start_modal_run(REPO, standin("print('never')"), {}, 60)
    output = "".join(run.chunks())
    assert run.wait() == 1
    assert "modal: RuntimeError: Image build for im-123 failed" in output


def test_unprepared_volume_names_the_prepare_command(cloud, tmp_path):
    for shard in (tmp_path / "volume" / "data").iterdir():
        shard.unlink()
    run = start_modal_run(REPO, standin("print('never')"), {}, 60)
    assert "modal run modal_train.py::prepare" in "".join(run.chunks())
    assert run.wait() == 1


def test_missing_modal_train_or_unreachable_api_is_refused_before_launch(cloud, tmp_path, monkeypatch):
    with pytest.raises(ModalNotReady, match="modal_train.py not found"):
        start_modal_run(tmp_path, "print(1)", {}, 60)
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ModalNotReady, match="cannot reach Modal"):
        start_modal_run(REPO, "print(1)", {}, 60)


def test_no_token_fails_fast_with_the_message(tmp_path):
    """A fresh process, as the runner is: no modal import, no network, well under 2 s."""
    probe = """
import json, sys
from pathlib import Path
from app.run.backends.modal_backend import ModalNotReady, check_modal_ready, start_modal_run
try:
    start_modal_run(Path(sys.argv[1]), "print(1)", {}, 60)
    raised = None
except ModalNotReady as exc:
    raised = str(exc)
print(json.dumps({"check": check_modal_ready(), "raised": raised, "modal_imported": "modal" in sys.modules}))
"""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", probe, str(REPO)], env=no_token_env(tmp_path), cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["check"] == report["raised"] and "run `modal setup`" in report["raised"]
    assert not report["modal_imported"]
    assert elapsed < 2.0


def test_readiness_check_agrees_with_modal_train(tmp_path):
    """The runner's check and modal_train.py's (itself checked against modal.config) give the same
    verdicts."""
    sys.path.insert(0, str(REPO))
    import modal_train

    for index, (modal_env, toml_text) in enumerate(CREDENTIAL_CASES):
        environ = case_environ(tmp_path, index, modal_env, toml_text)
        assert check_modal_ready(environ) == modal_train.credentials_problem(environ), environ


def test_the_runner_sees_a_modal_run_through_app_backends(cloud, tmp_path):
    """start_run("modal", ...) reads the worktree's train.py and wraps our ModalRun as the runner's Run."""
    from app.run.backends import start_run

    worktree = tmp_path / "worktree"
    worktree.mkdir()
    for name in ("modal_train.py", "prepare.py"):
        shutil.copy(REPO / name, worktree / name)
    (worktree / "train.py").write_text(standin(STEPS_FOREVER))
    run = start_run("modal", worktree, {}, 60)
    assert (run.backend, run.ident, run.pid) == ("modal", "ap-fake0001", None)
    stream = run.chunks()
    while b"step 00001" not in next(stream):
        pass
    run.stop(1.0)
    assert not run.exited()  # exited once the stream has drained
    for _ in stream:
        pass
    assert run.exited()
    assert run.wait() == -15
    assert not alive(int((tmp_path / "train.pid").read_text()))
