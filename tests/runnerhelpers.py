"""Test helper: a project repo whose train.py is a fast stand-in printing train.py's real output.

Usage:
    from runnerhelpers import make_project, agent_worktree, set_constant, cockpit
    main = make_project(tmp_path)
    wt = agent_worktree(main, "alice", tag="mar5")
    set_constant(wt, "VAL_BPB", 0.98)          # an agent-like edit, committed
    proc = cockpit("run", "-m", "lower bpb", cwd=wt)

The stand-in prints startup lines, `\\r` step lines and the `---` summary block exactly as
train.py does (the output contract); its behaviour comes from ALL_CAPS constants that tests edit
and commit like an agent would, and from STANDIN_* environment variables for per-run knobs
(STANDIN_DEVICE / _DEVICE_NAME / _ATTENTION set the comparability keys; empty leaves one out).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from gitrepo import commit_file, git, make_repo
from realdata import REAL_RUNS  # noqa: F401  (re-exported for the runner and CLI tests)

REPO_ROOT = Path(__file__).resolve().parents[1]

STANDIN_TRAIN_PY = r'''"""Stand-in for train.py: prints the real output contract, no model."""
import math
import os
import signal
import sys
import time

# ---------------------------------------------------------------------------
# Hyperparameters (edited by tests as an agent would)

VAL_BPB = 0.990000  # the val_bpb this "model" reaches
NUM_STEPS = 6  # steps printed
STEP_SECONDS = 0.05  # wall time per step
EXIT_CODE = 0  # 1 = crash after training
FAIL_AT = -1  # step at which the loss explodes (FAIL, exit 1); -1 = never
SUMMARY = "ok"  # ok | nan | missing | none
TOK_PER_SEC = 52480  # throughput reported

# ---------------------------------------------------------------------------

steps = int(os.environ.get("STANDIN_STEPS", NUM_STEPS))
step_s = float(os.environ.get("STANDIN_STEP_SECONDS", STEP_SECONDS))
if os.environ.get("STANDIN_IGNORE_TERM"):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if os.environ.get("STANDIN_PIDFILE"):
    with open(os.environ["STANDIN_PIDFILE"], "w") as f:
        f.write(str(os.getpid()))


def record(event):
    """One line per start/end to STANDIN_RECORD: pid, CUDA_VISIBLE_DEVICES, event, time."""
    if os.environ.get("STANDIN_RECORD"):
        with open(os.environ["STANDIN_RECORD"], "a") as f:
            f.write(f"{os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES', '-')} {event} "
                    f"{time.time():.6f}\n")


record("start")
budget = float(os.environ.get("AUTORESEARCH_TIME_BUDGET", 300))
if os.environ.get("STANDIN_EXIT_NOISE"):  # what triton's nanobind prints at interpreter exit
    import atexit
    atexit.register(lambda: print("nanobind: leaked 3 instances!\n - leaked instance 0x7f of type ctx\n" * 40,
                                  end="", flush=True))
print("Vocab size: 8,192")
print("Model config: {'n_layer': 8}")
print("Time budget: %ds" % budget)
t0 = time.time()
for step in range(steps):
    time.sleep(step_s)
    loss = 9.0 - step * 0.1
    if step == FAIL_AT:
        loss = float("nan")
    pct = 100.0 * (step + 1) / steps
    remaining = max(0, (steps - step - 1) * step_s)
    print(f"\rstep {step:05d} ({pct:.1f}%) | loss: {loss:.6f} | lrm: 1.00 | dt: {step_s * 1000:.0f}ms | "
          f"tok/sec: {TOK_PER_SEC:,} | mfu: 0.0% | epoch: 1 | remaining: {remaining:.0f}s    ",
          end="", flush=True)
    if math.isnan(loss):
        print("\nFAIL")
        sys.exit(1)
if os.environ.get("STANDIN_TRACEBACK"):  # glued to the last step line, as a crash in training prints it
    raise RuntimeError(os.environ["STANDIN_TRACEBACK"])
print()
training = time.time() - t0
print("Evaluating...")
if SUMMARY != "none":
    val = float("nan") if SUMMARY == "nan" else float(os.environ.get("STANDIN_VAL_BPB", VAL_BPB))
    print("---")
    print(f"val_bpb:          {val:.6f}")
    print(f"training_seconds: {training:.1f}")
    print(f"total_seconds:    {training + 0.1:.1f}")
    print(f"peak_vram_mb:     1024.0")
    print(f"mfu_percent:      0.00")
    print(f"total_tokens_M:   {TOK_PER_SEC * training / 1e6:.1f}")
    if SUMMARY != "missing":
        print(f"num_steps:        {steps}")
    print(f"num_params_M:     50.3")
    print(f"depth:            8")
    print(f"time_budget:      {budget:g}")
    print(f"max_seq_len:      {os.environ.get('AUTORESEARCH_MAX_SEQ_LEN', 2048)}")
    print(f"eval_tokens:      {os.environ.get('AUTORESEARCH_EVAL_TOKENS', 20971520)}")
    print(f"vocab_size:       {os.environ.get('AUTORESEARCH_VOCAB_SIZE', 8192)}")
    device = os.environ.get("STANDIN_DEVICE", "cpu")
    print(f"device:           {device}")
    if os.environ.get("STANDIN_DEVICE_NAME", "cpu model" if device == "cpu" else ""):
        print(f"device_name:      {os.environ.get('STANDIN_DEVICE_NAME', 'cpu model')}")
    if os.environ.get("STANDIN_ATTENTION", "sdpa"):
        print(f"attention:        {os.environ.get('STANDIN_ATTENTION', 'sdpa')}")
record("end")
sys.exit(EXIT_CODE)
'''


def make_project(tmp_path: Path, name: str = "project", config: str = "") -> Path:
    """A real repo with the stand-in train.py committed on main; `config` goes to pyproject.toml.

    The stand-in has no model to hand over, so the cockpit's own evaluation is off unless
    `config` sets trusted_eval."""
    main = make_repo(tmp_path / name)
    commit_file(main, "train.py", STANDIN_TRAIN_PY, "stand-in train.py")
    if "trusted_eval" not in config:
        config = f'trusted_eval = "off"\n{config}'
    commit_file(main, "pyproject.toml", f"[tool.cockpit]\n{config}\n", "cockpit settings")
    return main


def agent_worktree(main: Path, agent: str, tag: str = "t1") -> Path:
    """A worktree for `agent` on branch autoresearch/<tag>-<agent>, beside the main worktree."""
    path = main.parent / "worktrees" / agent
    git(main, "worktree", "add", "--quiet", "-b", f"autoresearch/{tag}-{agent}", str(path))
    return path.resolve()


def set_constant(worktree: Path, name: str, value: object, commit: bool = True) -> str:
    """Rewrite `NAME = ...` in the worktree's train.py (and commit it, as an agent does)."""
    path = worktree / "train.py"
    text, count = re.subn(rf"^{name} = [^#\n]*", f"{name} = {value!r}  ", path.read_text(),
                          count=1, flags=re.M)
    assert count == 1, f"{name} not found in train.py"
    path.write_text(text)
    if not commit:
        return ""
    git(worktree, "commit", "--quiet", "-am", f"{name} = {value!r}")
    return git(worktree, "rev-parse", "HEAD")


def cockpit_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COCKPIT_", "STANDIN_", "AUTORESEARCH_"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["COCKPIT_SUPERVISOR"] = "off"  # no background supervisor outlives a test unless it asks
    env.update(extra)
    return env


def cockpit(*args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `cockpit ARGS` as a real process and wait for it."""
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=cwd,
                          env=env or cockpit_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_cockpit(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "app.cli", *args], cwd=cwd,
                            env=env or cockpit_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    """Run `cockpit ARGS` inside this process (fast); returns (exit status, stdout, stderr)."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    from app.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse usage errors
                code = int(exc.code or 0)
    finally:
        os.chdir(previous)
    return code, out.getvalue(), err.getvalue()


def pid_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
