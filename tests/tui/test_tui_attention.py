"""Attention in the TUI on the fixture ledger at 80x24: the header's count and the supervisor's
liveness, agents waiting for review or input shown so, `!` listing them and jumping to each, the
optional bell."""
from __future__ import annotations

from pathlib import Path

from textual.widgets import OptionList, Static

from app.config import Settings
from app.ledger.store import Ledger
from app.ledger.supervisor import write_supervisor
from app.supervisor import process
from app.tui.app import make_app
from app.tui.screens.attention import AttentionModal
from app.tui.screens.detail import DetailScreen
from tuiagents import agents_cell
from tuifixtures import FIXED_NOW, build_ledger
from waiting import wait_until


def status_line(app) -> str:
    return str(app.dashboard.query_one("#status-bar", Static).render())


def kinds(app) -> list[str]:
    return [item.kind for item in app.dashboard.data.attention]


async def test_count_labels_list_and_jump_at_80x24(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path)
    with Ledger(fx.ledger_path) as ledger:
        write_supervisor(ledger, state="running", pid=1, waiting={})
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=0.05, settings=Settings(bell=True))
    rings: list[int] = []
    app.bell = lambda: rings.append(1)  # the terminal's bell cannot be heard from a test
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.dashboard.data is not None and "review" in kinds(app))
        assert "supervisor" not in kinds(app)  # its heartbeat is fresh
        count = len(app.dashboard.data.attention)
        line = status_line(app)
        assert f"⚑ {count} need you (!) · supervised" in line
        assert line.index("supervised") + len("supervised") < 78  # visible at 80 columns
        await wait_until(pilot, lambda: agents_cell(app, "bob", "state") == "review")
        assert rings == []

        with Ledger(fx.ledger_path) as ledger:  # the supervisor saw alice's pane waiting
            write_supervisor(ledger, waiting={"alice": {"since": FIXED_NOW - 60,
                                                        "prompt": "❯ 1. Yes \x1b[31m"}})
        await wait_until(pilot, lambda: agents_cell(app, "alice", "state") == "waiting")
        await wait_until(pilot, lambda: f"⚑ {count + 1} need you" in status_line(app))
        await wait_until(pilot, lambda: rings == [1])  # the app hears it after the dashboard

        await pilot.press("exclamation_mark")
        modal = app.screen
        assert isinstance(modal, AttentionModal)
        options = modal.query_one(OptionList)
        assert options.option_count == count + 1
        texts = [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]
        assert texts[0].startswith("review") and f"#{fx.ids['pending']}" in texts[0]
        assert any(t.startswith("waiting") and "❯ 1. Yes" in t and "\x1b" not in t for t in texts)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen))
        assert app.screen.exp_id == fx.ids["pending"]

        await pilot.press("escape")
        await wait_until(pilot, lambda: app.screen is app.dashboard)
        await pilot.press("exclamation_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, AttentionModal))
        waiting = [i for i, item in enumerate(app.screen.items) if item.kind == "waiting"][0]
        await pilot.press(*["down"] * waiting, "enter")  # an agent's item: its row is highlighted
        await wait_until(pilot, lambda: app.screen is app.dashboard
                         and app.dashboard.agents_panel.selected.name == "alice")


async def test_no_supervisor_is_counted_and_said(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path)
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.dashboard.data is not None and "supervisor" in kinds(app))
        assert "no supervisor" in status_line(app)
        assert app.dashboard.data.supervisor is None


async def test_choosing_no_supervisor_starts_one_and_the_header_says_so(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path)
    app = make_app(fx.ledger_path, poll_interval=0.05, watch=False)  # real time: a real heartbeat
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_until(pilot, lambda: app.dashboard.data is not None
                             and "no supervisor" in status_line(app))
            await pilot.press("exclamation_mark")
            await wait_until(pilot, lambda: isinstance(app.screen, AttentionModal))
            down = [i for i, item in enumerate(app.screen.items) if item.kind == "supervisor"][0]
            await pilot.press(*["down"] * down, "enter")
            await wait_until(pilot, lambda: "· supervised" in status_line(app), timeout=30)
            assert process.running_pid(fx.ledger_path) not in (None, -1)
    finally:
        process.stop(fx.ledger_path)
    assert process.running_pid(fx.ledger_path) is None
