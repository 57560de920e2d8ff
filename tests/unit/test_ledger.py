"""The ledger: schema, pragmas, audit trail, bad files, read-only, concurrent writers."""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import sqlite3
from pathlib import Path

import pytest

from app.ledger.schema import SCHEMA_VERSION
from app.ledger.store import Ledger, LedgerConflict, LedgerError, StepRow, find_ledger_path, summary_columns
from oldledger import v1_ledger


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_new_ledger_has_schema_wal_and_plain_tables(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "ledger.db"
    with Ledger(path) as ledger:
        assert ledger.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert ledger.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert ledger.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30000
        assert ledger.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    plain = sqlite3.connect(path)
    tables = {r[0] for r in plain.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"experiments", "steps", "events", "notes", "agents"} <= tables
    assert plain.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_register_update_and_audit_events(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        exp_id = ledger.register(tag="mar5", agent="a1", description="[red]x[/red]")
        ledger.update(exp_id, status="running", event="start", pid=123)
        ledger.add_steps(exp_id, [StepRow(step=1, t=1.0, loss=9.5), StepRow(step=2, t=2.0, loss=9.1)],
                         progress_pct=10.0, last_loss=9.1)
        ledger.add_note("lr too high", experiment_id=exp_id)
        exp = ledger.get(exp_id)
        assert exp.description == "[red]x[/red]" and exp.status == "running" and exp.pid == 123
        assert exp.progress_pct == 10.0 and exp.heartbeat_at is not None
        assert [s.loss for s in ledger.steps(exp_id)] == [9.5, 9.1]
        assert [e.kind for e in ledger.events(exp_id)] == ["register", "start", "note"]
        assert all(e.agent == "a1" for e in ledger.events(exp_id))
        assert ledger.notes(experiment_id=exp_id)[0].text == "lr too high"
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            ledger.conn.execute("UPDATE events SET kind = 'x'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            ledger.conn.execute("DELETE FROM events")
        with pytest.raises(ValueError, match="unknown experiment fields"):
            ledger.update(exp_id, bogus=1)
        with pytest.raises(LedgerError, match="no experiment #99"):
            ledger.get(99)


def test_failed_write_rolls_back_whole_transaction(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        exp_id = ledger.register(agent="a")
        with pytest.raises(LedgerConflict):
            ledger.add_steps(exp_id + 1, [StepRow(step=1, t=0.0)], progress_pct=1.0)
        assert ledger.steps(exp_id + 1) == []
        assert len(ledger.events()) == 1


def test_transition_is_compare_and_set(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        exp_id = ledger.register(agent="a", status="running")
        assert ledger.transition(exp_id, {"status": "running"}, status="finished", decision="keep",
                                 event="finish")
        assert not ledger.transition(exp_id, {"status": "running"}, decision="lost", event="lost")
        assert ledger.get(exp_id).decision == "keep"
        assert [e.kind for e in ledger.events(exp_id)] == ["register", "finish"]


def test_best_ignores_discards_and_integrity_flagged_runs(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as ledger:
        ledger.register(tag="t", branch="b", decision="keep", val_bpb=1.00)
        ledger.register(tag="t", branch="b", decision="discard", val_bpb=0.90)
        ledger.register(tag="t", branch="b", decision="keep", val_bpb=0.80, integrity=1)
        kept = ledger.register(tag="t", branch="b", decision="keep", val_bpb=0.95)
        ledger.register(tag="u", branch="c", decision="keep", val_bpb=0.50)
        best = ledger.best(tag="t")
        assert best is not None and best.id == kept
        assert ledger.best(branch="b", exclude_id=kept).val_bpb == 1.00
        assert ledger.best().val_bpb == 0.50


def test_summary_columns_keep_every_key() -> None:
    summary = {"val_bpb": 0.99, "num_steps": 953, "router_ent": 1.3, "device": "cuda"}
    values = summary_columns(summary)
    assert values["val_bpb"] == 0.99 and values["num_steps"] == 953 and values["device"] == "cuda"
    assert "router_ent" not in values and '"router_ent": 1.3' in values["summary_json"]
    odd = summary_columns({"val_bpb": float("nan"), "mfu_percent": float("inf"), "depth": True,
                           "num_steps": "many", "training_seconds": 300})
    assert set(odd) == {"training_seconds", "summary_json"}  # numeric columns: finite numbers only
    assert '"num_steps": "many"' in odd["summary_json"] and "NaN" in odd["summary_json"]


def test_a_ledger_another_process_creates_meanwhile_is_not_foreign(tmp_path: Path, monkeypatch) -> None:
    """Several agents open a fresh repository's ledger at once: one creates the tables right
    after another read schema version 0; that one must not call the file foreign."""
    path = tmp_path / "ledger.db"
    real_connect = sqlite3.connect
    raced = []

    class Racing(sqlite3.Connection):
        def execute(self, sql, *args):
            cursor = super().execute(sql, *args)
            if sql == "PRAGMA user_version" and not raced:
                raced.append(cursor.fetchone()[0])
                Ledger(path).close()  # the other process, between our two reads
                return super().execute("SELECT ?", (raced[0],))
            return cursor

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **kw: real_connect(*a, factory=Racing, **kw))
    with Ledger(path) as ledger:
        assert raced == [0] and ledger.experiments() == []
        assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_failed_commit_rolls_back_and_the_connection_stays_usable(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        with pytest.raises(LedgerConflict, match="FOREIGN KEY"):
            with ledger.write() as conn:  # the foreign key is checked at COMMIT, which fails
                conn.execute("PRAGMA defer_foreign_keys = ON")
                conn.execute("INSERT INTO steps (experiment_id, step, t) VALUES (999, 1, 0.0)")
        assert not ledger.conn.in_transaction
        assert ledger.register(description="next") == 1 and ledger.steps(999) == []


def test_not_sqlite_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"results: not a database\n" * 200)
    before = digest(path)
    with pytest.raises(LedgerError, match="not a cockpit ledger"):
        Ledger(path)
    assert digest(path) == before


def test_foreign_sqlite_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(LedgerError, match="not a cockpit ledger"):
        Ledger(path)
    assert digest(path) == before


def test_newer_schema_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.register(agent="a")
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = digest(path)
    with pytest.raises(LedgerError, match="newer cockpit"):
        Ledger(path)
    assert digest(path) == before


def test_read_only_never_writes(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        exp_id = ledger.register(agent="a")
    with Ledger(path, read_only=True) as ro:
        assert ro.get(exp_id).agent == "a"
        with pytest.raises(LedgerError, match="read-only"):
            ro.update(exp_id, status="running")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            ro.conn.execute("DELETE FROM notes")
    with pytest.raises(LedgerError, match="no ledger"):
        Ledger(tmp_path / "missing.db", read_only=True)
    assert not (tmp_path / "missing.db").exists()


def test_data_version_moves_when_another_connection_commits(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as writer, Ledger(path, read_only=True) as reader:
        before = reader.data_version()
        writer.register(agent="a")
        assert reader.data_version() != before


def test_ledger_path_override_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_ledger_path(tmp_path, override=tmp_path / "x.db") == (tmp_path / "x.db").resolve()
    monkeypatch.setenv("COCKPIT_LEDGER", str(tmp_path / "env.db"))
    assert find_ledger_path(tmp_path) == (tmp_path / "env.db").resolve()


def _writer(path: str, worker: int, count: int) -> None:
    with Ledger(path) as ledger:
        for i in range(count):
            exp_id = ledger.register(agent=f"w{worker}", description=f"{worker}-{i}")
            ledger.add_steps(exp_id, [StepRow(step=i, t=float(i))], progress_pct=50.0)
            ledger.transition(exp_id, {"status": "registered"}, status="finished", decision="keep",
                              event="finish")


@pytest.mark.slow
def test_eight_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 40)) for w in range(8)]
    for proc in procs:
        proc.start()
    with Ledger(path, read_only=True) as reader:
        while any(p.is_alive() for p in procs):
            reader.experiments(limit=50, newest_first=True)
    for proc in procs:
        proc.join()
        assert proc.exitcode == 0
    with Ledger(path, read_only=True) as ledger:
        exps = ledger.experiments()
        assert len(exps) == 320 and all(e.decision == "keep" for e in exps)
        assert len({e.description for e in exps}) == 320
        assert len(ledger.events(kind="finish")) == 320
        assert ledger.conn.execute("SELECT count(*) FROM steps").fetchone()[0] == 320


def test_read_only_opens_when_wal_files_cannot_be_made(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    with Ledger(path) as ledger:
        ledger.register(agent="theirs")
    for leftover in tmp_path.glob("ledger.db-*"):
        leftover.unlink()
    # Root can write anywhere, so block the shared-memory file the way a read-only directory would.
    (tmp_path / "ledger.db-shm").mkdir()
    with Ledger(path, read_only=True) as ro:
        assert [e.agent for e in ro.experiments()] == ["theirs"]


def test_upgrade_to_comparability_keys_fills_them_from_stored_summaries(tmp_path: Path) -> None:
    summary = {"val_bpb": 0.99, "time_budget": 300, "max_seq_len": 2048, "eval_tokens": 20971520,
               "vocab_size": 8192, "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3",
               "attention": "fa3"}
    path = v1_ledger(tmp_path / "old.db", [
        {"created_at": 1.0, "summary_json": json.dumps(summary), "decision": "keep"},
        {"created_at": 2.0, "summary_json": json.dumps({"val_bpb": 0.98}), "decision": "keep"},
        {"created_at": 3.0, "summary_json": "{broken"}])
    with Ledger(path) as ledger:
        first, second, third = (ledger.get(i) for i in (1, 2, 3))
    assert first.compare_key == ("time_budget=300 max_seq_len=2048 eval_tokens=20971520 vocab_size=8192"
                                 " | NVIDIA H100 80GB HBM3 | fa3")
    assert (second.compare_key, third.compare_key) == (None, None)
    assert (first.not_comparable, second.not_comparable) == (0, 0)
