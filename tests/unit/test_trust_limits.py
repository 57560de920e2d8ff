"""Trust, item 5: limits. Capped text, an export that is safe for a terminal, imports that never
hold the write lock for long, a runner that waits out a locked ledger and says why, bounded
durations. Real SQLite, real git worktrees, real `cockpit` processes and a real pty."""
from __future__ import annotations

import json
import os
import pty
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from app.config import ConfigError, load_settings
from app.ledger import chain, store
from app.ledger.limits import TEXT_CAP
from app.ledger.queries import insert_experiments
from app.ledger.store import Ledger, LedgerError
from app.observe.worktrees import import_results_tsv
from runnerhelpers import REPO_ROOT, cli, cockpit, cockpit_env
from waiting import wait_for

HOSTILE = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\x1b[2J\x1b[H"  # clipboard, title, clear



# ---------------------------------------------------------------------------
# Text caps

def test_a_long_description_or_note_from_the_command_line_is_refused(project) -> None:
    code, _, err = cli("run", "-m", "x" * (TEXT_CAP + 1), cwd=project.wt)
    assert code == 2 and f"at most {TEXT_CAP}" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "-m", "ok", "--hypothesis", "é" * TEXT_CAP, cwd=project.wt)
    assert code == 2 and "--hypothesis" in err
    code, _, err = cli("note", "n" * (TEXT_CAP + 1), cwd=project.main)
    assert code == 2 and "the note is" in err
    assert not project.db.exists() or Ledger(project.db).experiments() == []


def test_a_huge_description_in_a_results_tsv_is_cut_when_stored(project) -> None:
    huge = "A" * 5_000_000
    (project.wt / "results.tsv").write_text(
        f"commit\tval_bpb\tmemory_gb\tstatus\tdescription\nabc1234\t0.99\t1.0\tdiscard\t{huge}\n")
    with Ledger(project.db) as db:
        [exp_id] = import_results_tsv(db, project.wt, settle_s=0).imported
        stored = db.get(exp_id).description
        assert len(stored.encode()) <= TEXT_CAP and "[cut: " in stored
        assert chain.verify(db) == []
        db.update(exp_id, hypothesis="h" * 10_000)
        assert len(db.get(exp_id).hypothesis) <= TEXT_CAP


# ---------------------------------------------------------------------------
# Export for terminals

def _hostile_ledger(project) -> None:
    with Ledger(project.db) as db:
        db.register(agent="alice", commit_sha="abc1234" + "0" * 33, status="finished",
                    decision="keep", val_bpb=0.99, description=f"lower lr{HOSTILE} done")


def test_export_removes_escape_sequences_unless_raw_to_a_file_or_pipe(project) -> None:
    _hostile_ledger(project)
    proc = cockpit("export", "tsv", cwd=project.main)
    assert proc.returncode == 0 and "\x1b" not in proc.stdout and "\x07" not in proc.stdout
    assert "lower lr done" in proc.stdout
    out = project.tmp / "raw.tsv"
    proc = cockpit("export", "tsv", "--raw", "-o", str(out), cwd=project.main)
    assert proc.returncode == 0 and "\x1b]52;" in out.read_text()
    proc = cockpit("export", "tsv", "--raw", cwd=project.main)  # a pipe: allowed, said explicitly
    assert proc.returncode == 0 and "\x1b]52;" in proc.stdout


def test_raw_export_to_a_terminal_is_refused(project) -> None:
    _hostile_ledger(project)
    master, slave = pty.openpty()
    try:
        proc = subprocess.run([sys.executable, "-m", "app.cli", "export", "tsv", "--raw"],
                              cwd=project.main, env=cockpit_env(), stdout=slave,
                              stderr=subprocess.PIPE, text=True, timeout=60, check=False)
        os.set_blocking(master, False)
        try:
            shown = os.read(master, 65536)
        except BlockingIOError:
            shown = b""
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 2 and "never to a terminal" in proc.stderr
    assert b"\x1b]52;" not in shown


# ---------------------------------------------------------------------------
# Imports in batches; a runner that waits out a lock

def test_imports_are_written_in_attested_batches(tmp_path) -> None:
    with Ledger(tmp_path / "l.db") as db:
        rows = ({"tag": "imp", "backend": "import", "status": "finished", "decision": "discard",
                 "val_bpb": 1.0, "import_key": f"k{i}", "created_at": 1.0} for i in range(250))
        assert insert_experiments(db, rows, actor="human", agent="x", detail={}, batch=100) == 250
        assert [e.detail["added"] for e in db.events(kind="import")] == [100, 100, 50]
        assert chain.verify(db) == []


@pytest.mark.slow
def test_a_big_import_never_makes_a_live_writer_wait_long(tmp_path) -> None:
    tsv = tmp_path / "big.tsv"
    with open(tsv, "w") as f:
        f.write("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n")
        f.writelines(f"{i:07x}\t{0.9 + i * 1e-7:.6f}\t1.0\tdiscard\trow {i}\n"
                     for i in range(60_000))
    path = tmp_path / "l.db"
    Ledger(path).close()
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--ledger", str(path), "import",
                             str(tsv)], cwd=REPO_ROOT, env=cockpit_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    waits = []
    with Ledger(path) as live:
        exp_id = live.register(agent="live", status="running")
        while proc.poll() is None:
            started = time.monotonic()
            live.add_steps(exp_id, [], progress_pct=1.0)  # the runner's heartbeat write
            waits.append(time.monotonic() - started)
            time.sleep(0.02)
    assert proc.returncode == 0, proc.stderr
    assert len(waits) > 5 and max(waits) < 2.0, max(waits)  # far below the 30 s busy timeout
    with Ledger(path) as db:
        assert len(db.experiments(tag="big")) == 60_000


def test_a_runner_locked_out_of_the_ledger_retries_and_records_why(project, monkeypatch) -> None:
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 0.3)
    monkeypatch.setenv("STANDIN_STEPS", "10")
    monkeypatch.setenv("STANDIN_STEP_SECONDS", "0.2")
    held = threading.Event()

    def hog() -> None:
        def running() -> bool:
            try:
                with Ledger(project.db, read_only=True) as db:
                    return any(e.status == "running" for e in db.live())
            except LedgerError:  # not there, or not migrated yet
                return False
        wait_for(running, timeout=60)
        conn = sqlite3.connect(project.db, timeout=10, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the busy timeout
        held.set()
        time.sleep(3.5)
        conn.execute("COMMIT")
        conn.close()
    thread = threading.Thread(target=hog)
    thread.start()
    code, out, err = cli("run", "-m", "baseline", "--json", cwd=project.wt)
    thread.join()
    assert held.is_set() and code == 0, err
    result = json.loads(out)
    assert result["decision"] == "keep"
    assert "locked" in result["reason"] and "database is locked" in err
    with Ledger(project.db) as db:
        [finish] = db.events(result["id"], kind="finish")
        assert "locked" in finish.detail["ledger_trouble"]
        assert chain.verify(db) == []


# ---------------------------------------------------------------------------
# Durations

@pytest.mark.parametrize("setting", ["kill_grace_s = inf", "kill_grace_s = nan",
                                     "kill_grace_s = -1.0", "review_timeout_s = 1e12",
                                     "timeout_factor = inf", "implausible_ratio = 0.0"])
def test_durations_and_ratios_must_be_finite_and_bounded(project, setting) -> None:
    (project.main / ".autoresearch").mkdir(exist_ok=True)
    (project.main / ".autoresearch" / "config.toml").write_text(setting + "\n")
    with pytest.raises(ConfigError, match="must be a finite number between"):
        load_settings(project.main)
    proc = cockpit("run", "-m", "try", cwd=project.wt)
    assert proc.returncode == 2 and "must be a finite number" in proc.stderr
