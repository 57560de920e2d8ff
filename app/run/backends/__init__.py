"""Where train.py runs: `local` (a subprocess here) or `modal` (a cloud GPU via modal_train.py).

Every backend returns a Run: `ident` (pid or Modal call id), `pid`/`pid_start` (None on Modal),
`chunks()` (raw output bytes), `exited()`, `wait()` (exit code) and `stop(grace_s)`.
"""
from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Protocol

from app.errors import InfraError
from app.run.backends.local import LocalRun

BACKENDS = ("local", "modal")


class BackendUnavailable(InfraError):
    """The backend cannot run anything here (Modal not set up, SDK missing)."""


class Run(Protocol):
    @property
    def backend(self) -> str: ...
    @property
    def ident(self) -> str: ...
    @property
    def pid(self) -> int | None: ...  # the local process (a group leader); None on Modal
    @property
    def pid_start(self) -> float | None: ...

    def chunks(self) -> Iterator[bytes]: ...
    def exited(self) -> bool: ...
    def wait(self) -> int: ...
    def stop(self, grace_s: float) -> None: ...


class ModalAdapter:
    """A ModalRun (app/run/backends/modal_backend.py) seen as a Run."""

    backend = "modal"
    pid = None
    pid_start = None

    def __init__(self, modal_run) -> None:
        self._run = modal_run
        self.ident = str(modal_run.ident)
        self._done = threading.Event()

    def chunks(self) -> Iterator[bytes]:
        try:
            for text in self._run.chunks():
                yield text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
        finally:
            self._done.set()

    def exited(self) -> bool:
        return self._done.is_set()

    def wait(self) -> int:
        return self._run.wait()

    def stop(self, grace_s: float) -> None:
        self._run.cancel()


def check_backend(name: str) -> None:
    """Raise BackendUnavailable with the fix when `name` cannot run here (checked before registering)."""
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r} (choose {', '.join(BACKENDS)})")
    if name == "modal":
        try:
            from app.run.backends.modal_backend import check_modal_ready
        except ImportError as exc:
            raise BackendUnavailable(f"the Modal backend cannot load: {exc}") from exc
        problem = check_modal_ready()
        if problem:
            raise BackendUnavailable(problem)


def start_run(name: str, worktree: Path, env: Mapping[str, str], timeout_s: float) -> Run:
    """Start train.py of `worktree` on backend `name`."""
    if name == "local":
        return LocalRun(worktree, env)
    from app.run.backends.modal_backend import start_modal_run

    if "AUTORESEARCH_MODAL_GPU" in env:  # modal_train.py picks its GPU type when it is loaded
        os.environ["AUTORESEARCH_MODAL_GPU"] = env["AUTORESEARCH_MODAL_GPU"]
    source = (worktree / "train.py").read_text(encoding="utf-8")
    return ModalAdapter(start_modal_run(worktree, source, dict(env), timeout_s))
