"""Quitting a cockpit that started processes (the demo) asks whether to stop them."""
from __future__ import annotations

import html

import pytest

from app.tui.app import make_app
from app.tui.screens.quit import QuitModal
from tuifixtures import build_ledger
from waiting import wait_until


@pytest.fixture
def fx(tmp_path):
    return build_ledger(tmp_path)


@pytest.mark.parametrize("key, expected", [("y", [True]), ("n", [False]), ("enter", [True])])
async def test_quit_asks_then_runs_the_hook_and_exits(fx, key, expected) -> None:
    answers: list[bool] = []
    app = make_app(fx.ledger_path, clock=fx.clock, quit_question="Stop the demo's 2 agents?",
                   on_quit=answers.append)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitModal))
        assert "Stop the demo's 2 agents?" in html.unescape(app.export_screenshot()).replace("\xa0", " ")
        await pilot.press(key)
        await wait_until(pilot, lambda: answers == expected)
        await wait_until(pilot, lambda: not app.is_running)


async def test_escape_stays_and_plain_quit_does_not_ask(fx) -> None:
    answers: list[bool] = []
    app = make_app(fx.ledger_path, clock=fx.clock, quit_question="Stop?", on_quit=answers.append)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await wait_until(pilot, lambda: isinstance(app.screen, QuitModal))
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, QuitModal))
        assert app.is_running and answers == []
    plain = make_app(fx.ledger_path, clock=fx.clock)
    async with plain.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await wait_until(pilot, lambda: not plain.is_running)
