"""One supervisor per ledger: its lock, starting it in the background, asking whether it runs, stopping it.

The lock is an exclusive `flock` on `<ledger dir>/supervisor.lock`, held for the supervisor's whole
life and released by the kernel when it dies, however it dies; the file says who holds it
("pid start_time"), so a second supervisor can name the first and `--stop` signals the right one.

Usage:
    lock = acquire(ledger_path)            # SupervisorRunning(pid) if one already holds it
    pid = running_pid(ledger_path)         # None when no supervisor runs
    ensure_running(ledger_path, cwd)       # start one, detached, logging to supervisor.log
    stop(ledger_path)                      # TERM it and wait until the lock is free
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.errors import UsageError
from app.run.procs import process_identity, same_process

AUTOSTART_ENV = "COCKPIT_SUPERVISOR"  # "off": `cockpit`, `agent new`, `demo` start no supervisor
START_WAIT_S = 10.0  # how long `ensure_running(wait=True)` waits for the new one to hold the lock
STOP_WAIT_S = 15.0  # how long `stop` waits for the lock to be released
HOLDER_READS = 50  # reads of the lock file (10 ms apart) for the pid of a holder that just took it


class SupervisorRunning(UsageError):
    """Another supervisor holds this ledger's lock."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid

    @classmethod
    def held(cls, pid: int | None, lock: Path) -> SupervisorRunning:
        who = f"pid {pid}" if pid else "another process"
        return cls(f"a supervisor already runs for this ledger ({who}; lock {lock})", pid)


@dataclass
class Lock:
    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _sibling(ledger_path: Path, name: str) -> Path:
    """`<ledger dir>/supervisor.lock` for the default ledger.db, `<stem>.supervisor.lock` beside others."""
    ledger_path = Path(ledger_path)
    prefix = "" if ledger_path.name == "ledger.db" else f"{ledger_path.stem}."
    return ledger_path.parent / f"{prefix}{name}"


def lock_path(ledger_path: Path) -> Path:
    return _sibling(ledger_path, "supervisor.lock")


def log_path(ledger_path: Path) -> Path:
    return _sibling(ledger_path, "supervisor.log")


def _holder(path: Path) -> tuple[int | None, float | None]:
    try:
        fields = path.read_text().split()
        return int(fields[0]), float(fields[1])
    except (OSError, ValueError, IndexError):
        return None, None


def acquire(ledger_path: Path) -> Lock:
    """Take the ledger's supervisor lock and write our pid into it; SupervisorRunning if held."""
    path = lock_path(ledger_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SupervisorRunning.held(_holder(path)[0], path) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {process_identity(os.getpid())}\n".encode())
    return Lock(path, fd)


def running_pid(ledger_path: Path) -> int | None:
    """The pid of the supervisor holding this ledger's lock, None when the lock is free (-1: held,
    but by a process that never said who it is)."""
    path = lock_path(ledger_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        for _ in range(HOLDER_READS):  # the holder writes its pid just after taking the lock
            pid = _holder(path)[0]
            if pid:
                return pid
            time.sleep(0.01)
        return -1
    finally:
        os.close(fd)
    return None


def autostart_enabled() -> bool:
    return os.environ.get(AUTOSTART_ENV, "").lower() not in ("off", "0", "no")


def home_of(ledger_path: Path) -> Path:
    """Where a supervisor of this ledger runs (and reads settings): the main worktree for the
    default `<main>/.autoresearch/ledger.db`, else the ledger's folder."""
    folder = Path(ledger_path).resolve().parent
    return folder.parent if folder.name == ".autoresearch" else folder


def ensure_running(ledger_path: Path, cwd: Path, *, wait: bool = False,
                   asked: bool = False) -> int | None:
    """Start a supervisor for this ledger unless one runs (or autostart is off, unless a human
    `asked`); its pid.

    Detached: its own session, stdin closed, output appended to supervisor.log. Two callers racing
    may both start one; the loser finds the lock held and exits, as designed."""
    pid = running_pid(ledger_path)
    if pid is not None or not (asked or autostart_enabled()):
        return pid
    log = log_path(ledger_path)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    source_root = str(Path(__file__).resolve().parents[2])  # `python -m app.cli` from a checkout too
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH", "")]))
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "--ledger", str(Path(ledger_path).resolve()),
             "supervise"], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    if not wait:
        return proc.pid
    deadline = time.monotonic() + START_WAIT_S
    while time.monotonic() < deadline and proc.poll() is None:
        pid = running_pid(ledger_path)
        if pid is not None:
            return pid
        time.sleep(0.05)
    return running_pid(ledger_path)


def stop(ledger_path: Path, wait_s: float = STOP_WAIT_S) -> int | None:
    """TERM the running supervisor (only if the lock's pid is still the process that took it) and
    wait for the lock to be free; the pid stopped, None when none ran. TimeoutError if it lingers."""
    path = lock_path(ledger_path)
    if running_pid(ledger_path) is None:
        return None
    pid, start = _holder(path)
    if pid is None or not same_process(pid, start):
        raise TimeoutError(f"the supervisor lock {path} is held, but not by the process it names")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while running_pid(ledger_path) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the supervisor (pid {pid}) did not stop within {wait_s:.0f} s")
        time.sleep(0.05)
    return pid
