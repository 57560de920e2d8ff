"""Dashboard snapshots on the fixture ledger (fixed data and clock) at 80x24, 120x40 and 200x50.

Regenerate after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`,
then look at the SVGs under tests/__snapshots__/ before committing them.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import Footer, Log

from app.tui.app import make_app
from app.tui.screens.confirm import ConfirmModal
from app.tui.widgets.live_view import LiveView
from tuifixtures import build_ledger
from waiting import wait_until


def settled(fx):
    """run_before: wait until the data, the live log, the curves and the footer are all in."""
    async def run_before(pilot) -> None:
        dashboard = pilot.app.dashboard
        await wait_until(pilot, lambda: dashboard.is_mounted and dashboard.query(LiveView))
        live = dashboard.query_one(LiveView)

        def ready() -> bool:
            return (dashboard.data is not None and dashboard.data.follow is not None
                    and live.exp_id == fx.ids["running"] and len(live.query_one(Log).lines) >= 3
                    and str(live.query_one("#live-progress").render()).startswith("step")
                    and live._curves != ((), ())
                    and len(dashboard.query_one(Footer).children) > 2)

        await wait_until(pilot, ready, timeout=10)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
    return run_before


@pytest.fixture
def fx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fixture = build_ledger(tmp_path / "fx")
    monkeypatch.chdir(fixture.root)  # the status bar shows the ledger path relative to here
    return fixture


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (200, 50)])
def test_dashboard(snap_compare, fx, size: tuple[int, int]) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=0.05)
    assert snap_compare(app, terminal_size=size, run_before=settled(fx))


def test_kill_confirmation_at_80x24(snap_compare, fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=0.05)
    wait = settled(fx)

    async def run_before(pilot) -> None:
        await wait(pilot)
        table = pilot.app.dashboard.table
        table.move_cursor(row=table.get_row_index(str(fx.ids["running"])))
        await pilot.pause()
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
