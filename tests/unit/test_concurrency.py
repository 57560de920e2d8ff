"""Eight `cockpit run` processes on one ledger at once, plus readers: no lost rows, no
"database is locked"."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from app.ledger.store import Ledger
from runnerhelpers import agent_worktree, cockpit, cockpit_env, make_project, start_cockpit

AGENTS = 8


@pytest.mark.slow
def test_eight_concurrent_runs_and_a_reader_lose_nothing(tmp_path: Path) -> None:
    main = make_project(tmp_path)
    worktrees = [agent_worktree(main, f"agent{i}", tag="swarm") for i in range(AGENTS)]
    env = cockpit_env(STANDIN_STEPS="12", STANDIN_STEP_SECONDS="0.15")
    db_path = main / ".autoresearch" / "ledger.db"
    Ledger(db_path).close()  # created once, so every process opens an existing ledger

    stop = threading.Event()
    reader_errors: list[str] = []
    reads = {"cli": 0, "direct": 0}

    def read_in_process() -> None:
        with Ledger(db_path, read_only=True) as db:
            while not stop.is_set():
                try:
                    db.experiments()
                    db.live()
                    reads["direct"] += 1
                except Exception as exc:  # any error here is the failure under test
                    reader_errors.append(repr(exc))
                stop.wait(0.02)

    def read_through_cli() -> None:
        while not stop.is_set():
            proc = cockpit("history", "--json", "--limit", "0", cwd=main, env=env)
            if proc.returncode != 0:
                reader_errors.append(proc.stderr)
            else:
                json.loads(proc.stdout)
                reads["cli"] += 1

    readers = [threading.Thread(target=read_in_process), threading.Thread(target=read_through_cli)]
    for thread in readers:
        thread.start()
    procs = [start_cockpit("run", "-m", f"run {i}", "--json", cwd=wt, env=env)
             for i, wt in enumerate(worktrees)]
    outputs = [p.communicate(timeout=300) for p in procs]
    stop.set()
    for thread in readers:
        thread.join(timeout=60)

    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "locked" not in err.lower()
        assert json.loads(out)["decision"] == "keep"  # each is its own branch's baseline
    assert not reader_errors, reader_errors[:3]
    assert reads["cli"] >= 1 and reads["direct"] >= 10

    with Ledger(db_path) as db:
        rows = db.experiments()
        assert len(rows) == AGENTS
        assert {r.agent for r in rows} == {f"agent{i}" for i in range(AGENTS)}
        assert all(r.status == "finished" and r.val_bpb == 0.99 for r in rows)
        for row in rows:
            assert [e.kind for e in db.events(row.id)] == ["register", "start", "finish", "decide"]
            assert db.steps(row.id), f"#{row.id} recorded no step"
            assert Path(row.log_path).stat().st_size > 0
        overlap = max(sum(r.started_at <= row.started_at < r.finished_at for r in rows)
                      for row in rows)
        assert overlap >= 2, "the runs did not run at the same time"
