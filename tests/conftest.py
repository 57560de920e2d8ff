"""Shared pytest setup: the helper modules in this folder (gitrepo, runnerhelpers, tuifixtures, ...)
are importable from every test folder (`pythonpath` in pyproject.toml); unit/ tests the UI-free core,
tui/ the Textual app under Pilot, e2e/ real tmux, real training and the demo. Fixtures used in more
than one test module live here."""
from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from modalfakes import fake_cloud
from runnerhelpers import agent_worktree, make_project


@pytest.fixture
def utc(monkeypatch: pytest.MonkeyPatch):
    """Times shown in UTC, so assertions and snapshots do not depend on the machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """The Modal SDK faked at its boundary (modalfakes.py): modal_train.py's real body, in process."""
    yield from fake_cloud(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def no_background_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cockpit`, `agent new` and `demo` start a detached supervisor: not from tests, unless asked."""
    monkeypatch.setenv("COCKPIT_SUPERVISOR", "off")


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COCKPIT_/STANDIN_/AUTORESEARCH_ variable of the shell running the tests leaks into them
    (COCKPIT_SUPERVISOR=off, set for every test, stays)."""
    for key in list(os.environ):
        if key.startswith(("COCKPIT_", "STANDIN_", "AUTORESEARCH_")) and key != "COCKPIT_SUPERVISOR":
            monkeypatch.delenv(key)


@pytest.fixture
def project(tmp_path: Path, clean_env: None) -> SimpleNamespace:
    """A main worktree with a ledger and one agent worktree (alice, tag t1) for `cockpit run`."""
    main = make_project(tmp_path)
    wt = agent_worktree(main, "alice", tag="t1")
    return SimpleNamespace(main=main, wt=wt, db=main / ".autoresearch" / "ledger.db", tmp=tmp_path)
