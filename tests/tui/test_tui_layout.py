"""The dashboard over SSH: at 80x24 the header keeps the best, the table keeps 8 rows whatever the
agents panel holds, ids of any size show whole (snapshots at three sizes: test_tui_snapshots)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from textual.widgets import Footer

from app.ledger.store import Ledger
from app.tui.app import make_app
from app.tui.widgets.live_view import LiveView
from tuifixtures import build_ledger
from waiting import wait_until

POLL = 0.05


async def settled_dashboard(pilot):
    dashboard = pilot.app.dashboard
    await wait_until(pilot, lambda: dashboard.data is not None and dashboard.table.row_count > 0
                     and len(dashboard.query_one(Footer).children) > 2)
    await pilot.pause(0.1)
    return dashboard


async def test_80x24_with_many_agents_and_a_long_path_keeps_best_and_8_rows(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path / ("a-very-long-directory-name-" * 4) / "fx")
    with Ledger(fx.ledger_path) as ledger:
        for i in range(8):
            ledger.upsert_agent(f"extra{i}", actor="test", state="running", branch=f"b{i}")
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        dashboard = await settled_dashboard(pilot)
        header = str(dashboard.query_one("#status-bar").render())
        assert "best mar6 0.985000 (#15)" in header.splitlines()[0][:80]
        table = dashboard.table
        assert table.region.height >= 10  # the column header, 8 rows and one to spare for a strip
        assert table.region.bottom <= dashboard.query_one(LiveView).region.y
        assert dashboard.query_one(Footer).region.bottom == 24



async def test_ids_past_100000_are_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO experiments (id, tag, agent, status, decision, val_bpb, "
                         "description, created_at) VALUES (?, 't', 'a', 'finished', 'discard', "
                         "1.0, 'idea', 0)", [(99_999,), (1_234_567,)])
    app = make_app(path, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        dashboard = await settled_dashboard(pilot)
        table = dashboard.table
        assert table.get_cell("1234567", "id").plain.strip() == "1234567"
        column = next(c for c in table.columns.values() if c.key.value == "id")
        assert column.get_render_width(table) - 2 * table.cell_padding >= 7
        assert table.region.right <= 80


async def test_g_G_home_end_jump_and_the_sorted_column_is_marked(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path / "fx")
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        dashboard = await settled_dashboard(pilot)
        table = dashboard.table
        last = table.row_count - 1
        for key, row in (("G", last), ("g", 0), ("end", last), ("home", 0)):
            await pilot.press(key)
            await wait_until(pilot, lambda row=row: table.cursor_row == row)
        labels = {c.key.value: c.label.plain for c in table.columns.values()}
        assert labels["id"] == "#▼" and labels["val_bpb"] == "val_bpb"
        await pilot.press("s")
        await wait_until(pilot, lambda: table.columns[next(
            k for k in table.columns if k.value == "val_bpb")].label.plain == "val_bpb▲")
        assert next(c for c in table.columns.values() if c.key.value == "id").label.plain == "#"
        agents = dashboard.query_one("#agents-table")
        agents.focus()
        await pilot.press("G")
        await wait_until(pilot, lambda: agents.cursor_row == agents.row_count - 1)
