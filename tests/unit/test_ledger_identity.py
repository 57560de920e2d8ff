"""The ledger under the supervisor (app/ledger/store.py): a file deleted, replaced or truncated while
in use is noticed before the next write; a missing ledger where one existed is never recreated
empty; disk full says disk full; the runner and the supervisor stop with a clear message."""
from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.ledger.identity import LedgerGone, marker_path, open_failure
from app.ledger.store import Ledger, LedgerError
from oldledger import v1_ledger
from runnerhelpers import (
    agent_worktree,
    cockpit_env,
    make_project,
    pid_alive,
    start_cockpit,
)
from supervisorhelpers import running_supervisor
from waiting import wait_for


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / ".autoresearch" / "ledger.db"
    with Ledger(path) as ledger:
        ledger.register(tag="t1", agent="ada", description="first")
    return path


def remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_a_deleted_ledger_is_noticed_and_never_recreated_empty(ledger_path: Path) -> None:
    with Ledger(ledger_path) as ledger:
        remove(ledger_path)
        with pytest.raises(LedgerGone, match="was deleted while in use"):
            ledger.register(tag="t1", agent="ada", description="lost forever?")
    assert not ledger_path.exists() and marker_path(ledger_path).exists()
    with pytest.raises(LedgerGone, match="is missing, but one was created there"):
        Ledger(ledger_path)
    assert not ledger_path.exists()
    marker_path(ledger_path).unlink()  # the human says: start anew
    with Ledger(ledger_path) as ledger:
        assert ledger.experiments() == []


def test_a_replaced_ledger_is_noticed(ledger_path: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    Ledger(other).close()
    with Ledger(ledger_path) as ledger:
        os.replace(other, ledger_path)
        with pytest.raises(LedgerGone, match="replaced by another file"):
            ledger.update(1, description="into the wrong file")


def test_a_truncated_ledger_is_noticed(ledger_path: Path) -> None:
    with Ledger(ledger_path) as ledger:
        ledger.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.truncate(ledger_path, 0)
        with pytest.raises(LedgerGone, match="truncated"):
            ledger.update(1, description="into nothing")


def test_disk_full_while_writing_says_so(ledger_path: Path) -> None:
    with Ledger(ledger_path) as ledger:
        pages = ledger.conn.execute("PRAGMA page_count").fetchone()[0]
        ledger.conn.execute(f"PRAGMA max_page_count = {pages + 1}")  # a full disk, to SQLite
        with pytest.raises(sqlite3.OperationalError, match="disk is full"):
            for _ in range(200):
                ledger.add_note("x" * 4000)
        assert ledger.experiments()[0].description == "first"  # what was there is intact


def test_a_write_failure_while_migrating_is_not_called_not_a_ledger(tmp_path: Path) -> None:
    """An old ledger opened where nothing more can be written (a file-size limit on the process:
    SQLite's writes fail as on a full disk) must not be called "not a cockpit ledger"."""
    old = v1_ledger(tmp_path / "ledger.db")

    def full_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))

    proc = subprocess.run([sys.executable, "-m", "app.cli", "--ledger", str(old), "history"],
                          env=cockpit_env(), capture_output=True, text=True, timeout=60,
                          preexec_fn=full_disk, check=False)
    assert proc.returncode == 3
    assert proc.stderr.startswith(f"cockpit: cannot read or write the ledger {old}"), proc.stderr
    assert "is its disk full or failing?" in proc.stderr and "not a cockpit ledger" not in proc.stderr


def test_the_supervisor_stops_with_a_clear_message(ledger_path: Path) -> None:
    with running_supervisor(ledger_path) as supervisor:
        remove(ledger_path)
        wait_for(lambda: "stopped:" in supervisor.out.getvalue(), 10)
    log = supervisor.out.getvalue()
    assert f"supervisor stopped: the ledger {ledger_path} was deleted while in use" in log
    assert not ledger_path.exists()


@pytest.mark.slow
def test_the_runner_stops_with_a_clear_message_instead_of_deciding(tmp_path: Path) -> None:
    main = make_project(tmp_path)
    worktree = agent_worktree(main, "ada")
    pidfile = tmp_path / "train.pid"
    env = cockpit_env(STANDIN_STEPS="400", STANDIN_STEP_SECONDS="0.05", STANDIN_PIDFILE=str(pidfile))
    runner = start_cockpit("run", "-m", "a run", cwd=worktree, env=env)
    ledger_path = main / ".autoresearch" / "ledger.db"
    wait_for(lambda: pidfile.exists() and pidfile.read_text(), 60)
    train_pid = int(pidfile.read_text())
    saved = tmp_path / "saved.db"
    shutil.copy(ledger_path, saved)
    os.replace(saved, ledger_path)  # e.g. restored from a backup under the runner's feet
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 3, (out, err)
    assert "replaced by another file while in use" in err
    assert out == ""  # no decision block, no git action told to the agent
    wait_for(lambda: not pid_alive(train_pid), 20)


def test_open_failures_are_named_for_what_they_are(tmp_path: Path) -> None:
    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13
    assert open_failure(full, tmp_path / "l.db").startswith("disk full: cannot write the ledger")
    foreign = tmp_path / "foreign.db"
    foreign.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(LedgerError, match="is not a cockpit ledger"):
        Ledger(foreign)
