"""Snapshots of the detail and compare screens on fixed data (fixture ledger with fixed times, a git
repo with fixed commit dates, UTC). Regenerate with `pytest tests/test_tui_detail_snapshots.py
--snapshot-update` after checking the new SVGs by eye."""
from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_detail import diff_repo, fixed_git_dates, set_fields
from textual.pilot import Pilot

from app.tui.app import make_app
from app.tui.screens.compare import CompareScreen
from app.tui.screens.detail import DetailScreen
from app.tui.widgets.diff_view import DiffView
from app.tui.widgets.log_viewer import LogView
from tuifixtures import TuiFixture, build_ledger
from waiting import wait_until

SIZE = (100, 32)


@pytest.fixture
def repo_fx(tmp_path: Path, utc: None, monkeypatch: pytest.MonkeyPatch) -> tuple[TuiFixture, dict]:
    fixed_git_dates(monkeypatch)
    repo = diff_repo(tmp_path)
    fx = build_ledger(Path(repo["repo"]) / ".autoresearch")
    for name, parent, commit in (("baseline", "", repo["base"]), ("improved", repo["base"], repo["exp"]),
                                 ("approved", repo["exp"], repo["exp2"])):
        set_fields(fx, name, worktree=str(repo["repo"]), parent_sha=parent, commit_sha=commit)
    return fx, repo


def detail(fx: TuiFixture, name: str, *keys: str, log: bool = False):
    async def run_before(pilot: Pilot) -> None:
        screen = DetailScreen(fx.ledger_path, fx.ids[name], True)
        await pilot.app.push_screen(screen)
        await wait_until(pilot, lambda: screen.data is not None)
        views = screen.query(DiffView)
        await wait_until(pilot, lambda: all(view.result is not None for view in views))
        await pilot.press(*keys)
        if log:
            await wait_until(pilot, lambda: screen.query(LogView))
            view = screen.query_one(LogView)
            await wait_until(pilot, lambda: view.index and view.index.complete and view.page_height)
            await pilot.press("end")
        await pilot.pause()
    return run_before


def test_detail_overview(snap_compare, repo_fx) -> None:
    fx, _ = repo_fx
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    assert snap_compare(app, terminal_size=SIZE, run_before=detail(fx, "approved"))


def test_detail_diff_vs_parent(snap_compare, repo_fx) -> None:
    fx, _ = repo_fx
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    assert snap_compare(app, terminal_size=SIZE, run_before=detail(fx, "improved", "p"))


def test_detail_curve_overlay(snap_compare, repo_fx) -> None:
    fx, _ = repo_fx
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    assert snap_compare(app, terminal_size=SIZE, run_before=detail(fx, "running", "c"))


def test_detail_log_crash_tail(snap_compare, repo_fx) -> None:
    fx, _ = repo_fx
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    assert snap_compare(app, terminal_size=(80, 24), run_before=detail(fx, "crash", "l", log=True))


def test_compare_metrics(snap_compare, repo_fx) -> None:
    fx, _ = repo_fx

    async def run_before(pilot: Pilot) -> None:
        screen = CompareScreen(fx.ledger_path, fx.ids["improved"], fx.ids["approved"])
        await pilot.app.push_screen(screen)
        await wait_until(pilot, lambda: screen.query_one(DiffView).result is not None)
        await pilot.pause()

    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
