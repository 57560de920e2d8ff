"""Trust, item 3 (tamper evidence): events are hash-chained and record what they decided;
`cockpit verify` finds a row or an event changed with plain `sqlite3`, also in a ledger written
before the chain existed (migrated). Real SQLite files, real `cockpit` processes."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from app.ledger import chain
from app.ledger.schema import SCHEMA_VERSION
from app.ledger.store import Ledger
from oldledger import v1_ledger
from runnerhelpers import cockpit, cockpit_env

pytestmark = pytest.mark.usefixtures("clean_env")


def filled(path: Path) -> Ledger:
    ledger = Ledger(path)
    for val, decision in ((0.99, "keep"), (0.995, "discard"), (0.98, "keep")):
        exp_id = ledger.register(agent="a1", tag="t1", branch="autoresearch/t1-a1")
        ledger.update(exp_id, event="decide", status="finished", decision=decision, val_bpb=val)
    ledger.add_note("a lesson", experiment_id=1, author="a1")
    return ledger


def tamper(path: Path, sql: str, *args: object) -> None:
    conn = sqlite3.connect(path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def verify_cli(path: Path) -> tuple[int, dict]:
    proc = cockpit("--ledger", str(path), "verify", "--json", cwd=path.parent, env=cockpit_env())
    return proc.returncode, json.loads(proc.stdout)


def test_an_untouched_ledger_verifies(tmp_path) -> None:
    filled(tmp_path / "l.db").close()
    code, report = verify_cli(tmp_path / "l.db")
    assert code == 0 and report["ok"] and report["problems"] == [] and report["events"] == 7


def test_a_direct_update_of_a_decision_is_found(tmp_path) -> None:
    path = tmp_path / "l.db"
    filled(path).close()
    tamper(path, "UPDATE experiments SET decision = 'keep' WHERE id = 2")
    code, report = verify_cli(path)
    assert code == 1 and not report["ok"]
    [problem] = report["problems"]
    assert problem["id"] == 2 and "decision 'discard' -> 'keep'" in problem["message"]
    proc = cockpit("--ledger", str(path), "verify", cwd=tmp_path, env=cockpit_env())
    assert proc.returncode == 1 and "TAMPERED" in proc.stdout


def test_a_forged_val_bpb_and_a_row_inserted_by_hand_are_found(tmp_path) -> None:
    path = tmp_path / "l.db"
    filled(path).close()
    tamper(path, "UPDATE experiments SET val_bpb = 0.0001 WHERE id = 3")
    tamper(path, "INSERT INTO experiments (tag, branch, decision, val_bpb, created_at) "
                 "VALUES ('t1', 'autoresearch/t1-a1', 'keep', 0.5, 0)")
    with Ledger(path) as ledger:
        problems = {p.id: p.message for p in chain.verify(ledger)}
    assert "val_bpb 0.98 -> 0.0001" in problems[3]
    assert "no event" in problems[4]


def test_an_edited_or_removed_event_breaks_the_chain(tmp_path) -> None:
    path = tmp_path / "l.db"
    ledger = filled(path)
    head = chain.chain_head(ledger)
    ledger.close()
    tamper(path, "DROP TRIGGER events_append_only_update")
    tamper(path, "DROP TRIGGER events_append_only_delete")
    tamper(path, "UPDATE events SET actor = 'human' WHERE id = 2")
    tamper(path, "DELETE FROM events WHERE id = 7")  # the newest: only a known head finds it
    with Ledger(path) as ledger:
        problems = chain.verify(ledger, known_head=head)
    assert [(p.what, p.id) for p in problems] == [("event", 2), ("event", 7), ("note", 1)]
    assert "gone or was rewritten" in problems[1].message  # the note's event was the newest


def test_a_note_rewritten_by_hand_is_found(tmp_path) -> None:
    path = tmp_path / "l.db"
    filled(path).close()
    tamper(path, "UPDATE notes SET text = 'approve everything', author = 'human' WHERE id = 1")
    with Ledger(path) as ledger:
        [problem] = chain.verify(ledger)
    assert (problem.what, problem.id) == ("note", 1)


def test_every_write_through_the_cockpit_stays_verified(tmp_path) -> None:
    """Writes without an explicit event (e.g. the observer's late summary columns) get one."""
    with filled(tmp_path / "l.db") as ledger:
        ledger.update(1, val_bpb=0.9899, eval_tokens=1024)
        ledger.transition(2, {"decision": "discard"}, review="approved")
        assert chain.verify(ledger) == []
        assert ledger.events(1)[-1].kind == "update"


def _v1_ledger(path: Path) -> None:
    """A ledger as the cockpit wrote it before the chain: schema v1, events without hashes."""
    runs = list(enumerate(((0.99, "keep"), (0.97, "discard")), start=1))
    v1_ledger(path,
              [{"id": i, "tag": "t1", "decision": decision, "val_bpb": val, "status": "finished",
                "created_at": 1.0} for i, (val, decision) in runs],
              [{"at": 1.0 + i, "kind": "decide", "experiment_id": i,
                "detail": json.dumps({"decision": decision})} for i, (val, decision) in runs])


def test_an_old_ledger_gets_its_chain_at_migration_and_tampering_after_is_found(tmp_path) -> None:
    path = tmp_path / "old.db"
    _v1_ledger(path)
    with Ledger(path) as ledger:
        assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert chain.verify(ledger) == []
        assert [e.kind for e in ledger.events()] == ["decide", "decide", "seal"]
    tamper(path, "UPDATE experiments SET decision = 'keep' WHERE id = 2")
    with Ledger(path) as ledger:
        [problem] = chain.verify(ledger)
    assert problem.id == 2 and "changed outside the cockpit" in problem.message


def test_rows_imported_in_batches_are_attested(tmp_path) -> None:
    tsv = tmp_path / "results.tsv"
    tsv.write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n" + "".join(
        f"{i:07x}\t{0.99 - i / 1e5:.6f}\t1.0\tdiscard\trow {i}\n" for i in range(1, 51)))
    path = tmp_path / "l.db"
    proc = cockpit("--ledger", str(path), "import", str(tsv), cwd=tmp_path, env=cockpit_env())
    assert proc.returncode == 0, proc.stderr
    with Ledger(path) as ledger:
        assert chain.verify(ledger) == []
        [event] = ledger.events(kind="import")
        assert event.actor == "human" and event.detail["added"] == 50
    tamper(path, "UPDATE experiments SET decision = 'keep' WHERE id = 17")
    code, report = verify_cli(path)
    assert code == 1 and [p["id"] for p in report["problems"]] == [17]
