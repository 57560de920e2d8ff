"""Shared pytest setup: the helper modules in this folder (gitrepo, runnerhelpers, tuifixtures, ...)
are importable from every test folder (`pythonpath` in pyproject.toml); unit/ tests the UI-free core,
tui/ the Textual app under Pilot, e2e/ real tmux, real training and the demo."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_background_supervisor(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cockpit`, `agent new` and `demo` start a detached supervisor: not from tests, unless asked."""
    monkeypatch.setenv("COCKPIT_SUPERVISOR", "off")
