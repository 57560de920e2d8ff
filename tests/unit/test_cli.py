"""The `cockpit` command line: import/export of real results.tsv files, the queries and their
--json, the human actions, exit statuses and one-line errors."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import COMMAND_MODULES, build_parser
from app.ledger.store import Ledger
from app.observe.tsv import UPSTREAM_COLUMNS
from app.run.procs import process_identity
from runnerhelpers import REAL_RUNS, cli, cockpit, cockpit_env

REAL_TSVS = sorted(REAL_RUNS.glob("*.tsv"))


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "ledger.db"
    monkeypatch.setenv("COCKPIT_LEDGER", str(path))
    monkeypatch.delenv("COCKPIT_AGENT", raising=False)
    return path


def ok(*args: str, cwd: Path) -> str:
    code, out, err = cli(*args, cwd=cwd)
    assert code == 0, err
    return out


def jq(*args: str, cwd: Path):
    return json.loads(ok(*args, "--json", cwd=cwd))


def file_facts(path: Path) -> dict:
    """Row count, keep count and best kept val_bpb, read straight from the file."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t") if any((v or "").strip() for v in r.values())]
    kept = [float(r["val_bpb"]) for r in rows if r["status"].strip() == "keep" and float(r["val_bpb"]) > 0]
    return {"rows": len(rows), "keep": len(kept), "best": min(kept)}


# ---------------------------------------------------------------------------
# import / export on the real files

def test_real_tsv_files_are_present() -> None:
    assert len(REAL_TSVS) >= 3, f"expected the real results.tsv files in {REAL_RUNS}"


@pytest.mark.parametrize("path", REAL_TSVS, ids=lambda p: p.name)
def test_import_real_results_tsv_matches_the_file_and_is_idempotent(db, tmp_path, path) -> None:
    facts = file_facts(path)
    first = jq("import", str(path), "--tag", "fork", cwd=tmp_path)
    assert (first["added"], first["already"], first["skipped"]) == (facts["rows"], 0, [])
    again = jq("import", str(path), "--tag", "fork", cwd=tmp_path)
    assert (again["added"], again["already"]) == (0, facts["rows"])
    with Ledger(db) as ledger:
        rows = ledger.experiments(tag="fork")
        assert len(rows) == facts["rows"]
        assert sum(r.decision == "keep" for r in rows) == facts["keep"]
        assert ledger.best(tag="fork", comparable=False).val_bpb == pytest.approx(facts["best"])
        assert ledger.best(tag="fork") is None  # the agent's word: never a best for live runs
        assert len(ledger.events(kind="import")) == 1  # the second import changed nothing
    best = jq("best", "--tag", "fork", cwd=tmp_path)["best"]
    assert best["val_bpb"] == pytest.approx(facts["best"])
    report = jq("report", "--tag", "fork", cwd=tmp_path)
    assert report["total"] == facts["rows"] and report["by_decision"]["keep"] == facts["keep"]
    assert report["progression"][-1]["val_bpb"] == pytest.approx(facts["best"])


def test_import_text_names_skipped_lines_and_bad_files_change_nothing(db, tmp_path) -> None:
    good = tmp_path / "results.tsv"
    good.write_bytes(b"commit\tval_bpb\tmemory_gb\tstatus\tdescription\r\n"
                     b"a1b2c3d\t0.997900\t44.0\tkeep\tbaseline \xe2\x86\x92 ok\r\n\r\n"
                     b"\t0.99\t44.0\tkeep\tno commit\r\n"
                     b"b2c3d4e\tnot-a-number\t44.0\tdiscard\tbroken\r\n"
                     b"c3d4e5f\t0.000000\t0.0\tcrash\tOOM\r\n")
    code, out, err = cli("import", str(good), cwd=tmp_path)
    assert code == 0, err
    assert "2 imported" in out and "2 skipped" in out
    assert "skipped line 4: no commit" in out and "skipped line 5" in out
    with Ledger(db) as ledger:
        crash = [e for e in ledger.experiments() if e.decision == "crash"]
        assert crash and crash[0].val_bpb is None
    bad = tmp_path / "notes.tsv"
    bad.write_text("just some text\nnothing tabular\n")
    code, out, err = cli("import", str(bad), cwd=tmp_path)
    assert code == 2 and "no recognisable results.tsv header" in err
    code, _, err = cli("import", str(tmp_path / "missing.tsv"), cwd=tmp_path)
    assert code == 2 and "no file" in err
    with Ledger(db) as ledger:
        assert len(ledger.experiments()) == 2


def test_export_writes_upstreams_five_columns_and_round_trips(db, tmp_path) -> None:
    rtx = REAL_RUNS / "rtx5070-results.tsv"
    ok("import", str(rtx), "--tag", "rtx", cwd=tmp_path)
    out_file = tmp_path / "out" / "results.tsv"
    out_file.parent.mkdir()
    ok("export", "tsv", "-o", str(out_file), "--tag", "rtx", cwd=tmp_path)
    lines = out_file.read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == list(UPSTREAM_COLUMNS)
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == file_facts(rtx)["rows"] and all(len(r) == 5 for r in rows)
    assert all(len(r[0]) == 7 and r[3] in ("keep", "discard", "crash") for r in rows)
    assert all(r[1] == "0.000000" for r in rows if r[3] == "crash")
    assert any("→" in r[4] for r in rows)
    stdout = ok("export", "tsv", "--tag", "rtx", cwd=tmp_path)
    assert stdout.splitlines() == lines
    again = jq("import", str(out_file), "--tag", "rtx", cwd=tmp_path)  # same rows, same keys
    assert again["added"] == 0


# ---------------------------------------------------------------------------
# queries

@pytest.fixture
def filled(db, tmp_path) -> Ledger:
    ledger = Ledger(db)
    rows = [("a1", "t1", "keep", 0.99, "optimizer", 0), ("a1", "t1", "discard", 0.991, "lr", 1),
            ("a1", "t1", "keep", 0.98, "lr", 0), ("a2", "t2", "crash", None, "architecture", 0),
            ("a2", "t2", "keep", 1.2, "architecture", 0), ("a1", "t1", "discard", 0.9805, "lr", 1)]
    for agent, tag, decision, val, category, near in rows:
        ledger.register(agent=agent, tag=tag, branch=f"autoresearch/{tag}-{agent}",
                        commit_sha="f" * 40, description=f"{decision} {category}", category=category,
                        status="finished", decision=decision, val_bpb=val, near_miss=near,
                        training_seconds=300.0 if val else None)
    yield ledger
    ledger.close()


def test_history_filters_limits_and_json(filled, tmp_path) -> None:
    rows = jq("history", cwd=tmp_path)
    assert [r["id"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["id"] for r in jq("history", "--agent", "a2", cwd=tmp_path)] == [4, 5]
    assert [r["id"] for r in jq("history", "--decision", "keep", "--tag", "t1", cwd=tmp_path)] == [1, 3]
    assert [r["id"] for r in jq("history", "--category", "lr", cwd=tmp_path)] == [2, 3, 6]
    assert [r["id"] for r in jq("history", "--limit", "2", cwd=tmp_path)] == [5, 6]
    assert jq("history", "--status", "running", cwd=tmp_path) == []
    text = ok("history", "--tag", "t1", cwd=tmp_path)
    assert "0.980000" in text and "keep lr" in text and "~" in text  # near-miss mark


def test_best_report_and_suggest(filled, tmp_path) -> None:
    best = jq("best", cwd=tmp_path)
    assert best["best"]["id"] == 3 and set(best["by_tag"]) == {"t1", "t2"}
    assert best["by_tag"]["t2"]["id"] == 5
    report = jq("report", cwd=tmp_path)
    assert report["total"] == 6 and report["keep_rate"] == pytest.approx(0.5)
    assert [s["id"] for s in report["progression"]] == [1, 3, 5]
    assert report["categories"]["lr"] == {"runs": 3, "keep": 1}
    assert report["training_minutes"] == pytest.approx(25.0)
    ok("note", "lr warmup helps", "--exp", "3", cwd=tmp_path)
    suggestion = jq("suggest", "--tag", "t1", cwd=tmp_path)
    assert suggestion["strategy"] == "explore" and suggestion["finished"] == 4
    assert [e["id"] for e in suggestion["near_misses"]] == [6, 2]
    assert suggestion["notes"][0]["text"] == "lr warmup helps"
    assert "optimizer" in suggestion["underexplored"]
    text = ok("suggest", "--all", cwd=tmp_path)
    assert text.startswith("strategy: ") and "lr warmup helps" in text


def test_status_overview_and_detail(filled, tmp_path) -> None:
    filled.register(agent="a3", status="running", description="in flight", started_at=1.0,
                    runner_pid=os.getpid(), runner_start=process_identity(os.getpid()))
    filled.register(agent="a1", status="finished", decision="pending", review="pending", val_bpb=0.97,
                    description="waiting")
    state = jq("status", cwd=tmp_path)
    assert [e["id"] for e in state["live"]] == [7]
    assert [e["id"] for e in state["pending_review"]] == [8]
    text = ok("status", cwd=tmp_path)
    assert "#7" in text and "cockpit approve/reject 8" in text
    filled.update(4, crash_tail="Traceback\nRuntimeError: boom")
    detail = jq("status", "4", cwd=tmp_path)
    assert detail["decision"] == "crash" and detail["crash_tail"].endswith("boom")
    assert [e["kind"] for e in detail["events"]] == ["register"]
    assert "RuntimeError: boom" in ok("status", "4", cwd=tmp_path)
    code, _, err = cli("status", "99", cwd=tmp_path)
    assert code == 2 and err.strip() == "cockpit: no experiment #99"


def test_actions_from_the_command_line(filled, tmp_path) -> None:
    filled.register(agent="a1", status="finished", decision="pending", review="pending", val_bpb=0.97)
    assert jq("approve", "7", cwd=tmp_path)["decision"] == "keep"
    code, _, err = cli("reject", "7", cwd=tmp_path)
    assert code == 2 and "not awaiting review" in err
    code, _, err = cli("kill", "1", cwd=tmp_path)
    assert code == 2 and "not running" in err
    code, _, err = cli("note", "   ", cwd=tmp_path)
    assert code == 2 and "needs some text" in err
    note = jq("note", "a lesson", cwd=tmp_path)
    assert note["author"] == "human"


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m [b]x[/b] \x9b31m\u202eevil"


def test_text_from_agents_and_logs_reaches_the_terminal_sanitized(db, tmp_path) -> None:
    with Ledger(db) as ledger:
        ledger.register(agent=f"a{HOSTILE}", tag=f"t{HOSTILE}", description=f"d{HOSTILE}",
                        hypothesis=f"h{HOSTILE}", reason=f"r{HOSTILE}", crash_tail=f"c{HOSTILE}",
                        category="lr", status="finished", decision="keep", val_bpb=0.99)
        ledger.upsert_agent(f"bob{HOSTILE}", command=f"claude{HOSTILE}", branch=f"b{HOSTILE}")
        ledger.add_note(f"n{HOSTILE}", experiment_id=1, author=f"w{HOSTILE}")
    for args in (("history",), ("status",), ("status", "1"), ("best",), ("report",),
                 ("suggest", "--all"), ("agent", "list"), ("agent", "stop", "nobody")):
        code, out, err = cli(*args, cwd=tmp_path)
        assert code == (2 if args[-1] == "nobody" else 0), err
        for stream in (out, err):
            assert not any(c in stream for c in "\x1b\x07\x9b\u202e"), (args, stream)
        assert "red" in out + err and "[b]x[/b]" in out + err, args  # the text itself stays


# ---------------------------------------------------------------------------
# the command itself

def test_every_command_is_registered_with_help() -> None:
    parser = build_parser()
    names = set(parser._subparsers._group_actions[0].choices)
    assert {"run", "status", "history", "best", "report", "suggest", "note", "approve", "reject",
            "kill", "import", "export"} <= names
    assert all(m.startswith("app.commands.") for m in COMMAND_MODULES)


def test_usage_errors_exit_2_and_infrastructure_errors_exit_3(db, tmp_path) -> None:
    code, _, err = cli("approve", "not-a-number", cwd=tmp_path)
    assert code == 2 and "invalid int value" in err
    code, _, err = cli("run", cwd=tmp_path)
    assert code == 2 and "--description" in err
    db.write_bytes(b"\x00" * 4096)
    code, out, err = cli("history", cwd=tmp_path)
    assert code == 3 and out == "" and err.startswith("cockpit: ") and err[-1] == "\n"
    assert "Traceback" not in err


def test_outside_any_repository_without_a_ledger_says_how(tmp_path) -> None:
    proc = cockpit("history", cwd=tmp_path, env=cockpit_env(HOME=str(tmp_path)))
    assert proc.returncode == 3
    assert "not inside a git repository" in proc.stderr and "--ledger" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_closed_pipe_is_not_an_error(filled, tmp_path) -> None:
    with filled.write() as conn:  # ~0.4 MB of JSON: far more than a pipe buffer holds
        conn.executemany("INSERT INTO experiments (tag, description, created_at) VALUES (?, ?, ?)",
                         [("bulk", "x" * 500, 0.0)] * 400)
    env = cockpit_env(COCKPIT_LEDGER=str(filled.path))
    cmd = f"{sys.executable} -m app.cli history --json --limit 0 | head -c 20"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout == '[\n{"id":1,"tag":"t1",'[:20]
    assert "Traceback" not in proc.stderr and "Broken pipe" not in proc.stderr


def test_agent_and_tag_names_follow_the_documented_order(db, tmp_path, monkeypatch) -> None:
    from app.config import Settings
    from app.run.plan import agent_name, tag_name

    monkeypatch.delenv("COCKPIT_TAG", raising=False)
    wt = tmp_path / "bob"
    assert agent_name(None, wt) == "bob"
    monkeypatch.setenv("COCKPIT_AGENT", "carol")
    assert agent_name(None, wt) == "carol" and agent_name("dave", wt) == "dave"
    with Ledger(db) as ledger:
        plain, tagged = Settings(), Settings(tag="nightly")
        assert tag_name(None, ledger, "bob", "autoresearch/mar5-bob", plain) == "mar5"
        assert tag_name(None, ledger, "bob", "autoresearch/mar5", plain) == "mar5"
        assert tag_name(None, ledger, "bob", "feature/x", tagged) == "nightly"
        assert tag_name(None, ledger, "bob", "feature/x", plain) == "feature/x"
        ledger.upsert_agent("bob", tag="apr1")
        assert tag_name(None, ledger, "bob", "autoresearch/mar5-bob", plain) == "apr1"
        monkeypatch.setenv("COCKPIT_TAG", "env-tag")
        assert tag_name(None, ledger, "bob", "autoresearch/mar5-bob", plain) == "env-tag"
        assert tag_name("flag", ledger, "bob", "autoresearch/mar5-bob", plain) == "flag"
