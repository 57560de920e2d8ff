"""Run one experiment's train.py source on a Modal GPU through the repository's modal_train.py.

A thin adapter: credentials are checked first (no network, no modal import, so a missing token
fails at once), the ephemeral app runs in a worker thread that queues output chunks, and
cancel() stops the app, which terminates its container and train.py with it.
"""
from __future__ import annotations

import importlib.util
import itertools
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import suppress
from pathlib import Path
from types import ModuleType
from typing import Any

from app.errors import InfraError

EXIT_FAILED = 1            # train.py failed, or Modal did (the reason is in the output)
EXIT_TIMEOUT = 124         # the hard limit stopped the run
EXIT_CANCELLED = -15       # cancel() stopped the run
STARTUP_GRACE_S = 900.0    # image build and waiting for a GPU, allowed on top of the run's own timeout
IDENT_WAIT_S = 30.0        # how long start_modal_run waits for Modal to name the app
_END = object()
_module_ids = itertools.count(1)


class ModalNotReady(InfraError, RuntimeError):
    """Modal cannot run anything from here; the message is one line saying what to do."""


def check_modal_ready(environ: Mapping[str, str] | None = None) -> str | None:
    """None if Modal credentials exist, else the one-line message (reads config as modal.config does)."""
    environ = os.environ if environ is None else environ
    home = Path(environ.get("HOME") or "~").expanduser()
    path = Path(environ.get("MODAL_CONFIG_PATH") or home / ".modal.toml")
    try:
        profiles = _read_toml(path) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        return f"cannot read the Modal config ({exc}): fix it or run `modal setup`"
    active = [name for name, values in profiles.items()
              if isinstance(values, dict) and values.get("active")]
    section = profiles.get(environ.get("MODAL_PROFILE") or (active[0] if active else "default"))
    settings = dict(section) if isinstance(section, dict) else {}
    settings.update({key[len("MODAL_"):].lower(): value for key, value in environ.items()
                     if key.startswith("MODAL_")})
    has_token = settings.get("token_id") and settings.get("token_secret")
    has_oauth = settings.get("oauth_refresh_token") and settings.get("oauth_client_id") and (
        settings.get("oauth_client_secret") or settings.get("oauth_jwt_key"))
    if has_token or has_oauth:
        return None
    return (f"no Modal token found (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or a profile in {path}): "
            "run `modal setup` first")


def _read_toml(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: modal's own dependency reads it
        import toml
        return toml.loads(text)
    return tomllib.loads(text)


def load_modal_train(repo_root: Path) -> ModuleType:
    """A fresh copy of repo_root/modal_train.py: a Modal App can only run once at a time."""
    path = Path(repo_root) / "modal_train.py"
    if not path.is_file():
        raise ModalNotReady(f"{path} not found: the Modal backend runs experiments through it")
    name = f"_cockpit_modal_train_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # modal finds a function's source file through sys.modules
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class ModalRun:
    """One experiment on Modal: output chunks as they arrive, an exit code, and a working cancel()."""

    def __init__(self, module: ModuleType, train_source: str, env: dict[str, str], timeout_s: float) -> None:
        self.ident = ""
        self._module = module
        self._call = (train_source, dict(env), float(timeout_s))
        self._chunks: queue.Queue[Any] = queue.Queue()
        self._result: dict | None = None
        self._stop_reason: int | None = None  # EXIT_CANCELLED or EXIT_TIMEOUT once asked to stop
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drive, name=f"modal-run-{module.__name__}", daemon=True)
        self._watchdog = threading.Timer(timeout_s + STARTUP_GRACE_S, self._stop, args=(EXIT_TIMEOUT,))
        self._watchdog.daemon = True

    def start(self) -> ModalRun:
        """Start the app in the worker thread; return once Modal has named it (or IDENT_WAIT_S passed)."""
        self._thread.start()
        self._watchdog.start()
        deadline = time.monotonic() + IDENT_WAIT_S
        while not self.ident and self._thread.is_alive() and time.monotonic() < deadline:
            self.ident = self._app_id()
            time.sleep(0.05)
        return self

    def chunks(self) -> Iterator[str]:
        """Raw output text as it arrives, until the run is over."""
        while (item := self._chunks.get()) is not _END:
            yield item
        self._chunks.put(_END)  # a second reader ends too

    def wait(self) -> int:
        """0 ok, 1 train.py (or Modal) failed, 124 timeout, -15 cancelled; remote signal deaths as 128+N."""
        self._thread.join()
        if self._stop_reason is not None:
            return self._stop_reason
        if self._result is None:
            return EXIT_FAILED
        code = int(self._result.get("exit_code", EXIT_FAILED))
        return 128 - code if code < 0 else code

    def cancel(self) -> None:
        """Stop the remote work; safe to call twice or after the end."""
        self._stop(EXIT_CANCELLED)

    def _stop(self, reason: int) -> None:
        with self._lock:
            if self._stop_reason is not None or self._result is not None or not self._thread.is_alive():
                return
            self._stop_reason = reason
        threading.Thread(target=self._stop_app_once_named, name="modal-stop", daemon=True).start()

    def _stop_app_once_named(self) -> None:
        """Stop the app as soon as Modal has named it (it may still be building its image)."""
        while self._thread.is_alive():
            if self._app_id():
                with suppress(Exception):  # already stopped or disconnected: nothing left to stop
                    self._module.app.stop()
                return
            time.sleep(0.1)

    def _app_id(self) -> str:
        return getattr(self._module.app, "app_id", None) or ""

    def _drive(self) -> None:
        app, train = self._module.app, self._module.train
        try:
            if self._stop_reason is None:
                with app.run():
                    self.ident = self.ident or self._app_id()
                    if self._stop_reason is None:
                        for item in train.remote_gen(*self._call):
                            if isinstance(item, dict):
                                self._result = item
                            else:
                                self._chunks.put(item)
        except Exception as exc:
            if self._stop_reason is None:
                self._chunks.put(f"\nmodal: {type(exc).__name__}: {exc}\n")
        finally:
            self._watchdog.cancel()
            sys.modules.pop(self._module.__name__, None)
            self._chunks.put(_END)


def start_modal_run(repo_root: Path, train_source: str, env: dict[str, str], timeout_s: float) -> ModalRun:
    """Launch train_source on Modal via repo_root/modal_train.py; raises ModalNotReady with the fix."""
    if problem := check_modal_ready():
        raise ModalNotReady(problem)
    module = load_modal_train(repo_root)
    if problem := module.connection_problem():
        raise ModalNotReady(problem)
    return ModalRun(module, train_source, env, timeout_s).start()
