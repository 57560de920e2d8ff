"""The Modal SDK boundary, faked thinly for the backend and runner tests: App.run/stop and
Function.remote_gen run modal_train's real train body (stream_experiment) in this process, with a
directory as the volume. The `cloud` fixture (conftest.py) yields a `Cloud`."""
from __future__ import annotations

import contextlib
import os
import socket
import threading
from pathlib import Path

from app.run.backends import modal_backend


class FakeApp:
    """modal.App at the SDK boundary: run() names the ephemeral app, stop() or leaving run() ends it."""

    def __init__(self) -> None:
        self.app_id: str | None = None
        self.stopped = threading.Event()
        self.stop_calls = 0

    @contextlib.contextmanager
    def run(self):
        self.app_id = "ap-fake0001"
        try:
            yield self
        finally:
            self.stopped.set()

    def stop(self) -> None:
        self.stop_calls += 1
        self.stopped.set()


class FakeTrain:
    """modal.Function `train` at the SDK boundary: remote_gen runs the real body; a stopped app ends it."""

    def __init__(self, module, volume: Path, app: FakeApp) -> None:
        self.module, self.volume, self.app = module, volume, app
        self.calls: list[tuple] = []

    def remote_gen(self, train_source, env, timeout_s):
        self.calls.append((train_source, env, timeout_s))
        body = self.module.stream_experiment(train_source, self.volume, timeout_s, env)
        try:
            for item in body:
                if self.app.stopped.is_set():
                    raise RuntimeError("the app was stopped")
                yield item
        finally:
            body.close()  # the container dies: train.py's process group goes with it


def fake_cloud(monkeypatch, tmp_path):
    """Credentials in the environment, a listening loopback 'API server', a prepared volume directory, and
    modal_train.py loaded for real with its App and `train` swapped for the fakes."""
    for key in [k for k in os.environ if k.startswith("MODAL_")]:
        monkeypatch.delenv(key)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-test")
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-test")
    monkeypatch.setenv("MODAL_SERVER_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("PID_FILE", str(tmp_path / "train.pid"))
    volume = tmp_path / "volume"
    (volume / "tokenizer").mkdir(parents=True)
    (volume / "data").mkdir()
    for name in ("tokenizer/tokenizer.pkl", "tokenizer/token_bytes.pt", "data/shard_00000.parquet",
                 "data/shard_06542.parquet"):
        (volume / name).write_bytes(b"")
    cloud = Cloud()
    real_load = modal_backend.load_modal_train

    def load_with_fake_sdk(repo_root: Path):
        module = real_load(repo_root)
        module.app = FakeApp()
        module.train = FakeTrain(module, volume, module.app)
        if cloud.remote_gen is not None:
            module.train.remote_gen = lambda *args: cloud.remote_gen(module.app, *args)
        cloud.loaded.append(module)
        return module

    monkeypatch.setattr(modal_backend, "load_modal_train", load_with_fake_sdk)
    yield cloud
    server.close()


class Cloud:
    """What the `cloud` fixture hands a test: the modal_train modules it loaded, and an optional
    replacement for remote_gen (called with the fake app first)."""

    def __init__(self) -> None:
        self.loaded: list = []
        self.remote_gen = None
