"""The GPU pool end to end: declared devices (no GPU needed), real `cockpit run` processes on one
ledger, a stand-in train.py that records its CUDA_VISIBLE_DEVICES with start and end times."""
from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.actions import reap_lost
from app.ledger import leases
from app.ledger.store import Ledger
from runnerhelpers import (
    agent_worktree,
    cli,
    cockpit,
    cockpit_env,
    make_project,
    pid_alive,
    start_cockpit,
)
from waiting import wait_for


def pool_project(tmp_path: Path, agents: int, config: str) -> SimpleNamespace:
    main = make_project(tmp_path, config=config)
    worktrees = [agent_worktree(main, f"agent{i}") for i in range(agents)]
    db = main / ".autoresearch" / "ledger.db"
    Ledger(db).close()
    return SimpleNamespace(main=main, worktrees=worktrees, db=db, record=tmp_path / "record.txt")


def env_for(p: SimpleNamespace, steps: int = 5, step_s: float = 0.1, **extra: str) -> dict[str, str]:
    return cockpit_env(STANDIN_RECORD=str(p.record), STANDIN_STEPS=str(steps),
                       STANDIN_STEP_SECONDS=str(step_s), **extra)


def recorded(p: SimpleNamespace) -> dict[int, dict]:
    """pid -> {device, start, end} from the stand-in's record file."""
    runs: dict[int, dict] = defaultdict(dict)
    for line in p.record.read_text().splitlines():
        pid, device, event, at = line.split()
        runs[int(pid)].update(device=device, **{event: float(at)})
    return dict(runs)


def assert_no_device_shared(runs: dict[int, dict]) -> None:
    by_device: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for run in runs.values():
        by_device[run["device"]].append((run["start"], run["end"]))
    for device, spans in by_device.items():
        spans.sort()
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, f"device {device} held two runs at once: {spans}"


def training(p: SimpleNamespace) -> int:
    """Wait until the first run trains and the ledger knows its pid; that pid."""
    def ready() -> int | None:
        with Ledger(p.db, read_only=True) as db:
            pid = db.get(1).pid if db.experiments() else None
        return pid if pid and p.record.exists() and pid in recorded(p) else None
    return wait_for(ready, timeout=30)


def gpus_json(p: SimpleNamespace) -> dict:
    proc = cockpit("gpus", "--json", cwd=p.main)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_five_concurrent_runs_on_two_declared_devices_one_device_each_never_shared(tmp_path) -> None:
    p = pool_project(tmp_path, 5, 'gpus = ["0", "1"]')
    procs = [start_cockpit("run", "-m", f"run {i}", "--json", cwd=wt,
                           env=env_for(p, steps=10, step_s=0.2))
             for i, wt in enumerate(p.worktrees)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert json.loads(out)["decision"] == "keep"
    queued = sum("queued for a GPU: place" in err for _, err in outputs)
    assert queued >= 1  # 3 when all five ask at once; a loaded machine may stagger them

    runs = recorded(p)
    assert len(runs) == 5 and all("end" in r for r in runs.values())
    assert {r["device"] for r in runs.values()} == {"0", "1"}
    assert_no_device_shared(runs)
    with Ledger(p.db) as db:
        rows = db.experiments()
        assert all(r.status == "finished" and r.decision == "keep" for r in rows)
        for row in rows:
            assert row.gpu_ids == runs[row.pid]["device"]  # what train.py saw is what was recorded
            kinds = [e.kind for e in db.events(row.id)]
            assert "lease-acquire" in kinds and "lease-release" in kinds
            # the time budget starts when training starts, never while queued
            assert row.started_at <= runs[row.pid]["start"] < row.started_at + 2
        assert sum("queued" in [e.kind for e in db.events(r.id)] for r in rows) == queued
        assert leases.active(db) == []

    pool = gpus_json(p)["pools"]
    assert [d["id"] for d in pool[0]["devices"]] == ["0", "1"]
    assert all(d["experiment"] is None and d["duty_1h"] > 0 for d in pool[0]["devices"])
    assert pool[0]["queue_length"] == 0


@pytest.mark.slow
def test_gpus_shows_holder_and_queue_and_a_queued_run_can_be_killed(tmp_path) -> None:
    p = pool_project(tmp_path, 3, 'gpus = ["7"]')
    long_env = env_for(p, steps=3000, step_s=0.1)
    holder = start_cockpit("run", "-m", "holds", cwd=p.worktrees[0], env=long_env)
    training(p)
    waiting = [start_cockpit("run", "-m", f"waits {i}", cwd=wt, env=long_env)
               for i, wt in enumerate(p.worktrees[1:])]

    def queued() -> list:
        with Ledger(p.db, read_only=True) as db:
            return [e for e in db.live() if e.status == "queued"]
    first, second = sorted(wait_for(lambda: len(queued()) == 2 and queued(), timeout=30),
                           key=lambda e: e.agent)  # agent1 runs in waiting[0], agent2 in [1]

    pool = gpus_json(p)["pools"][0]
    assert pool["pool"] == "local" and pool["queue_length"] == 2
    (device,) = pool["devices"]
    assert device["id"] == "7" and device["agent"] == "agent0" and device["held_s"] >= 0
    with Ledger(p.db, read_only=True) as db:  # FIFO: in the order the runs asked
        fifo = [q.experiment_id for q in leases.active(db) if q.state == "queued"]
    assert [q["experiment"] for q in pool["queue"]] == fifo and len(fifo) == 2
    assert {q["agent"] for q in pool["queue"]} == {"agent1", "agent2"}
    code, out, _ = cli("gpus", cwd=p.main)
    assert code == 0 and "agent0" in out and "queued 1: #" in out

    code, out, err = cli("kill", str(first.id), cwd=p.main)
    assert code == 0, err
    out, err = waiting[0].communicate(timeout=30)
    assert waiting[0].returncode == 0, err
    with Ledger(p.db) as db:
        killed = db.get(first.id)
        assert killed.decision == "killed" and killed.started_at is None and killed.gpu_ids == ""
        assert [q.experiment_id for q in leases.active(db) if q.state == "queued"] == [second.id]
    assert len(recorded(p)) == 1  # the killed run never trained

    for proc, exp_id in ((waiting[1], second.id), (holder, 1)):
        cli("kill", str(exp_id), cwd=p.main)
        proc.communicate(timeout=60)
    with Ledger(p.db) as db:
        assert leases.active(db) == []
        assert db.get(second.id).decision == "killed"


@pytest.mark.slow
def test_sigkilled_runner_lease_goes_to_the_next_run_and_its_orphan_is_stopped(tmp_path) -> None:
    p = pool_project(tmp_path, 2, 'gpus = ["0"]')
    # a step every 60 s: the orphaned train.py prints nothing, so no broken pipe ends it
    victim = start_cockpit("run", "-m", "victim", cwd=p.worktrees[0],
                           env=env_for(p, steps=2, step_s=60))
    orphan = training(p)
    nxt = start_cockpit("run", "-m", "next", cwd=p.worktrees[1], env=env_for(p))
    wait_for(lambda: [e.status for e in Ledger(p.db, read_only=True).live()] == ["running", "queued"],
             timeout=30)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = time.time()
    _out, err = nxt.communicate(timeout=60)
    assert nxt.returncode == 0, err
    runs = recorded(p)
    started = max(r["start"] for pid, r in runs.items() if pid != orphan)
    assert started - killed_at < 10
    assert not pid_alive(orphan)
    with Ledger(p.db) as db:
        first = [lease for lease in leases.history(db, 0) if lease.experiment_id == 1]
        assert first[0].state == "released" and first[0].reason.startswith("reclaimed")
        assert first[0].released_at <= started


@pytest.mark.slow
def test_the_reaper_reclaims_the_lease_of_a_sigkilled_runner(tmp_path) -> None:
    p = pool_project(tmp_path, 1, 'gpus = ["0"]')
    victim = start_cockpit("run", "-m", "victim", cwd=p.worktrees[0],
                           env=env_for(p, steps=2, step_s=60))
    orphan = training(p)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    with Ledger(p.db) as db:
        assert [lease.state for lease in leases.active(db)] == ["held"]
        reap_lost(db, stale_after_s=0)
        assert leases.active(db) == []
        assert db.get(1).decision == "lost"
    assert not pid_alive(orphan)


def test_config_errors_are_one_line(tmp_path) -> None:
    for n, (config, wanted) in enumerate((
            ('gpus = "0"', "setting 'gpus' = '0' is invalid"),
            ('gpus = [true]', "is not a device index or UUID"),
            ('gpus = ["0", "0"]', "listed twice"),
            ("gpus_per_run = 0", "gpus_per_run must be at least 1"),
            ('modal_max_concurrent = "2"', "is not a valid int"),
            ('gpus = ["0", "1"]\ngpus_per_run = 3', "gpus_per_run = 3 but the pool has 2"))):
        p = pool_project(tmp_path / str(n), 1, config)
        for args in (("run", "-m", "x"), ("gpus",)):
            code, out, err = cli(*args, cwd=p.worktrees[0])
            if args[0] == "gpus" and "gpus_per_run = 3" in config:
                continue  # the pool itself is fine to look at
            assert code == 2, (config, args, out, err)
            assert wanted in err and len(err.strip().splitlines()) == 1, err


def test_no_pool_runs_as_before_and_gpus_says_so(tmp_path) -> None:
    p = pool_project(tmp_path, 1, "gpus = []")
    code, out, err = cli("run", "-m", "no pool", "--json", cwd=p.worktrees[0])
    assert code == 0, err
    with Ledger(p.db) as db:
        assert db.get(1).gpu_ids == "" and leases.history(db, 0) == []
    code, out, _ = cli("gpus", cwd=p.main)
    assert code == 0 and "no GPU pool" in out
    code, out, _ = cli("gpus", "--json", cwd=p.main)
    assert json.loads(out)["pools"] == []
