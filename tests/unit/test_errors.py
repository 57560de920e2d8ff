"""One error hierarchy: every exception class of app/ is a CockpitError of a kind with its exit code."""
from __future__ import annotations

import importlib
import inspect
import pkgutil
import sqlite3

import pytest

import app
from app.cli import main
from app.errors import EXIT_INFRA, EXIT_USAGE, CockpitError, InfraError, UsageError

CONTROL_FLOW = {"AgentStopped", "_Stop"}  # raised to unwind a loop on a signal, never shown
USAGE = {"ActionError", "AdoptAborted", "AgentError", "ConfigError", "DemoError", "DeviceError", "EvalError",
         "GitError", "LaunchError", "MainDirty", "MergeConflict", "MutationError", "PoolError",
         "RoleError", "RunRefused", "SupervisorRunning", "TsvFormatError"}
INFRA = {"BackendUnavailable", "CorpusError", "LedgerBusy", "LedgerConflict", "LedgerError",
         "LedgerGone", "ModalNotReady", "PaneError", "RunInfraError"}


def _exception_classes() -> dict[str, type[BaseException]]:
    found = {}
    for module in pkgutil.walk_packages(app.__path__, "app."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for name, cls in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.name:
                found[name] = cls
    return found


def test_every_exception_class_has_a_kind() -> None:
    classes = _exception_classes()
    kinds = {name: ("usage" if issubclass(cls, UsageError) else "infra" if issubclass(cls, InfraError)
                    else "base" if issubclass(cls, CockpitError) else "none")
             for name, cls in classes.items() if name not in CONTROL_FLOW | {"CockpitError"}}
    assert kinds == {**dict.fromkeys(USAGE, "usage"), **dict.fromkeys(INFRA, "infra"),
                     "UsageError": "usage", "InfraError": "infra",
                     "CommandError": "base"}  # a command's own refusal picks its exit code


def test_kinds_carry_their_exit_codes() -> None:
    assert UsageError("x").exit_code == EXIT_USAGE == 2
    assert InfraError("x").exit_code == EXIT_INFRA == 3
    classes = _exception_classes()
    assert all(classes[n]("x").exit_code == EXIT_USAGE for n in USAGE - {"MergeConflict"})
    assert classes["CommandError"]("x").exit_code == EXIT_USAGE
    assert classes["CommandError"]("x", EXIT_INFRA).exit_code == EXIT_INFRA


@pytest.mark.parametrize("error, code", [
    (UsageError("refused: the worktree is dirty"), 2),
    (InfraError("tmux is gone"), 3),
    (sqlite3.OperationalError("database is locked"), 3),
    (OSError("disk full"), 3),
])
def test_the_cli_maps_each_kind_to_its_exit_code(monkeypatch, capsys, error: Exception, code: int) -> None:
    def fail(_args: object) -> int:
        raise error

    monkeypatch.setattr("app.cli.open_tui", fail)
    assert main([]) == code
    assert capsys.readouterr().err == f"cockpit: {error}\n"
