"""Compare screen (Pilot): metrics side by side with deltas and the better val_bpb marked, and the
train.py diff between the two experiments' commits from a real git repo."""
from __future__ import annotations

from pathlib import Path

from test_tui_detail import diff_repo, set_fields
from textual.pilot import Pilot
from textual.widgets import Static, TabbedContent

from app.ledger.store import Experiment
from app.tui.app import make_app
from app.tui.screens.compare import BETTER, CompareScreen, better_side, metric_rows
from app.tui.widgets.diff_view import DiffView
from app.tui.widgets.metrics_table import MetricsTable
from tuifixtures import MARKUP_DESCRIPTION, TuiFixture, build_ledger
from waiting import wait_until


async def open_compare(pilot: Pilot, fx: TuiFixture, id_a: int, id_b: int) -> CompareScreen:
    screen = CompareScreen(fx.ledger_path, id_a, id_b)
    await pilot.app.push_screen(screen)
    diff = screen.query_one(DiffView)
    await wait_until(pilot, lambda: diff.result is not None)
    await pilot.pause()
    return screen


def table_rows(screen: CompareScreen) -> dict[str, list[str]]:
    table = screen.query_one("#compare-table", MetricsTable)
    rows = (table.get_row_at(i) for i in range(table.row_count))
    return {str(row[0]): [str(cell) for cell in row[1:]] for row in rows}


def test_metric_rows_and_the_better_side() -> None:
    a = Experiment(1, val_bpb=0.99, summary_json='{"val_bpb": 0.99, "num_steps": 900, "fork_key": 3}')
    b = Experiment(2, val_bpb=0.98, summary_json='{"val_bpb": 0.98, "num_steps": 950, "device": "cuda"}')
    rows = {row.name: row for row in metric_rows(a, b)}
    assert list(rows) == ["val_bpb", "num_steps", "fork_key", "device"]
    assert rows["num_steps"].delta == 50
    assert abs(rows["val_bpb"].delta + 0.01) < 1e-12
    assert rows["fork_key"].b is None and rows["fork_key"].delta is None
    assert better_side(a, b) == "b" and better_side(b, a) == "a"
    assert better_side(a, Experiment(3)) is None and better_side(a, a) is None


async def test_metrics_side_by_side_with_the_better_val_bpb_marked(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path / "fx")
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await open_compare(pilot, fx, fx.ids["baseline"], fx.ids["approved"])
        rows = table_rows(screen)
        assert rows["val_bpb"] == ["0.997900", f"0.991000 {BETTER}", "-0.006900"]
        assert rows["num_steps"] == ["953", "953", "+0"]
        assert rows["agent"][:2] == ["alice", "bob"]
        title = str(screen.query_one("#compare-title", Static).content)
        assert f"#{fx.ids['approved']} is better" in title
        table = screen.query_one(MetricsTable)
        val_row = next(i for i in range(table.row_count) if str(table.get_row_at(i)[0]) == "val_bpb")
        better_style = screen.get_component_rich_style("compare--better")
        assert table.get_row_at(val_row)[2].style == better_style
        await pilot.press("escape")

        # the other way round, and an untrusted description shown as typed
        screen = await open_compare(pilot, fx, fx.ids["pending"], fx.ids["baseline"])
        rows = table_rows(screen)
        assert rows["val_bpb"][0].endswith(BETTER) and not rows["val_bpb"][1].endswith(BETTER)
        assert rows["description"][0] == MARKUP_DESCRIPTION
        await pilot.press("escape")

        # a crashed run has no val_bpb: no winner, no crash
        screen = await open_compare(pilot, fx, fx.ids["crash"], fx.ids["baseline"])
        assert table_rows(screen)["val_bpb"] == ["—", "0.997900", ""]
        assert "no winner" in str(screen.query_one("#compare-title", Static).content)
        await pilot.press("escape")

        screen = CompareScreen(fx.ledger_path, fx.ids["baseline"], 9999)
        await pilot.app.push_screen(screen)
        await wait_until(pilot, lambda: "Cannot compare" in str(screen.query_one("#compare-title",
                                                                               Static).content))


async def test_diff_between_the_two_commits(tmp_path: Path) -> None:
    repo = diff_repo(tmp_path)
    fx = build_ledger(Path(repo["repo"]) / ".autoresearch")
    id_a = set_fields(fx, "baseline", worktree=str(repo["repo"]), commit_sha=repo["base"])
    id_b = set_fields(fx, "improved", worktree=str(tmp_path / "gone"), commit_sha=repo["exp2"])
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_compare(pilot, fx, id_a, id_b)
        await pilot.press("d")
        assert screen.query_one(TabbedContent).active == "diff"
        diff = screen.query_one(DiffView)
        assert diff.has_focus
        for line in ("-DEPTH = 8", "+DEPTH = 12", "-HEADS = 4", "+HEADS = 8"):
            assert line in diff.plain
        assert f"#{id_a} {str(repo['base'])[:7]} → #{id_b} {str(repo['exp2'])[:7]}" in diff.plain
        await pilot.press("t")
        assert screen.query_one(TabbedContent).active == "metrics"
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


async def test_loss_curves_overlaid_against_progress_then_step(tmp_path: Path) -> None:
    """Both runs' sampled steps (the fixture's baseline and approved runs) on one plot; `x`
    switches the x axis between training progress and the step number."""
    from app.ledger.store import Ledger
    from app.tui.widgets.loss_curve import LossCurve

    fx = build_ledger(tmp_path / "fx")
    id_a, id_b = fx.ids["baseline"], fx.ids["approved"]
    with Ledger(fx.ledger_path, read_only=True) as ledger:
        steps_a, steps_b = ledger.steps(id_a), ledger.steps(id_b)
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=(100, 32)) as pilot:
        screen = await open_compare(pilot, fx, id_a, id_b)
        await pilot.press("l")
        assert screen.query_one(TabbedContent).active == "curves"
        curve = screen.query_one(LossCurve)
        assert curve.main == [(s.progress_pct, s.loss) for s in steps_b]
        assert curve.reference == [(s.progress_pct, s.loss) for s in steps_a]
        assert curve.labels == (f"#{id_b}", f"#{id_a}") and f"#{id_b}: loss" in curve.caption
        await pilot.press("x")
        assert curve.by_step and curve.main == [(float(s.step), s.loss) for s in steps_b]
        assert "at step" in curve.caption
        assert "ahead of" in curve.caption or "trailing" in curve.caption
        await pilot.press("x")
        assert not curve.by_step and curve.main[-1][0] == steps_b[-1].progress_pct
