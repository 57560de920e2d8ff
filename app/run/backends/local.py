"""Run train.py as a local subprocess: same interpreter, unbuffered, in its own session.

Its own session (hence its own process group) lets the runner stop train.py and anything it
spawned (dataloader workers, compile workers) with one signal, without touching the runner.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from app.run.procs import process_identity, term_then_kill

READ_SIZE = 64 * 1024


class LocalRun:
    """A running `python train.py`; output is stdout and stderr merged, as raw bytes."""

    backend = "local"

    def __init__(self, worktree: Path, env: Mapping[str, str], script: str = "train.py") -> None:
        full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, script], cwd=worktree, env=full_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        self.pid_start = process_identity(self.pid)
        self.ident = str(self.pid)

    def chunks(self) -> Iterator[bytes]:
        """Raw output as it arrives, until train.py closes its output."""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while data := os.read(fd, READ_SIZE):
            yield data

    def exited(self) -> bool:
        """Whether train.py has exited, without reaping it: while unreaped its pid, which is
        also its process group's id, cannot be reused, so signalling the group stays safe."""
        if self.proc.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def wait(self) -> int:
        """Reap train.py, first killing whatever it left behind in its group."""
        if self.proc.returncode is None:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            self._signal_group(signal.SIGKILL)
        return self.proc.wait()

    def _signal_group(self, sig: int) -> bool:
        if self.proc.returncode is not None:
            return False  # reaped: the group id may name someone else's processes by now
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def stop(self, grace_s: float) -> None:
        """TERM the whole process group, then KILL what is left after `grace_s` (also what
        train.py left behind in its group when it has exited already)."""
        term_then_kill(lambda: not self.exited() and self._signal_group(signal.SIGTERM),
                       lambda: self._signal_group(signal.SIGKILL), self.exited, grace_s)
