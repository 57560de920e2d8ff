"""The GPU strip: eight pooled devices with holders, utilisation and duty cycle in 80 columns,
the queue length, live updates when a lease is released, hidden when there is no pool."""
from __future__ import annotations

import os
from pathlib import Path

from app.ledger import leases
from app.ledger.store import Ledger
from app.run.procs import process_identity
from app.tui.app import make_app
from app.tui.widgets.gpu_strip import GpuStrip
from tuifixtures import build_ledger
from waiting import wait_until

POLL = 0.05
AGENTS = ("alice", "bob", "carol", "dave", "erin")


def lease_for(db: Ledger, agent: str, slots: list[str]) -> tuple[int, int]:
    """A real lease (acquired, or queued) held by this test process for a new experiment."""
    exp_id = db.register(description=f"{agent} run", agent=agent)
    lease_id = leases.enqueue(db, pool="local", experiment_id=exp_id, agent=agent,
                              holder_pid=os.getpid(), holder_start=process_identity(os.getpid()))
    if leases.try_acquire(db, lease_id, slots, 1, gone=lambda lease: False) is None:
        db.update(exp_id, status="queued")  # as the runner marks a run that waits
    return exp_id, lease_id


def strip_lines(app) -> list[str]:
    strip = app.screen.query_one(GpuStrip)
    return str(strip.render()).splitlines()


async def test_eight_gpus_fit_80_columns_with_holders_queue_and_updates(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path / "fx")
    slots = [str(i) for i in range(8)]
    with Ledger(fx.ledger_path) as db:
        leases.announce_devices(db, "local", [(s, "NVIDIA H100 80GB HBM3") for s in slots])
        held = [lease_for(db, agent, slots) for agent in AGENTS]
        leases.record_stats(db, "local", {"0": {"util_pct": 97.0, "mem_used_mb": 1000.0,
                                                "mem_total_mb": 81559.0, "temp_c": 64.0}})
    with Ledger(fx.ledger_path) as db:  # three more than devices: two wait
        more = {agent: lease_for(db, agent, slots) for agent in ("frank", "grace", "heidi",
                                                                 "ivan", "judy")}
    app = make_app(fx.ledger_path, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        strip = app.screen.query_one(GpuStrip)
        await wait_until(pilot, lambda: strip.display and "GPUs" in str(strip.render()))
        top, bottom = strip_lines(app)
        assert strip.region.width <= 80 and max(len(top), len(bottom)) <= 78
        for slot, agent in zip(slots, AGENTS + ("frank", "grace", "heidi")):
            assert f"{slot} {agent[:6]}" in top, top
        assert "+" not in top  # every device fits
        assert bottom.startswith("q 2") and "97%" in bottom
        table = app.dashboard.table  # the waiting runs show their place in the queue
        assert table.get_cell(str(more["ivan"][0]), "state").plain == "◌ queued #1"
        assert table.get_cell(str(more["judy"][0]), "state").plain == "◌ queued #2"
        agents = app.screen.query_one("#agents-table")
        assert "queued for a GPU: 2 of 2" in agents.get_cell("judy", "running").plain

        with Ledger(fx.ledger_path) as db:
            leases.release(db, held[0][1])
        await wait_until(pilot, lambda: "0 idle" in strip_lines(app)[0])  # queued runs take
        assert "1 bob" in strip_lines(app)[0]  # devices themselves (try_acquire), not the view


async def test_no_pool_no_strip(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path / "fx")
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        dashboard = app.dashboard
        await wait_until(pilot, lambda: dashboard.data is not None)
        assert dashboard.data.gpus is not None and dashboard.data.gpus.devices == ()
        assert not app.screen.query_one(GpuStrip).display
