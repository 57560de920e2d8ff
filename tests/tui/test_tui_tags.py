"""Tags: a tag column; the plot and the header's best follow one chosen tag (default: the tag
whose run finished last; `T` cycles; new runs elsewhere never switch it); the plot's x axis is
the experiment id, its legend a line of its own, its y ticks evenly spaced."""
from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from app.ledger.store import Ledger
from app.tui.app import make_app
from app.tui.poller import DashboardQuery, LedgerPoller
from app.tui.widgets.progression_plot import even_ticks, tick_labels
from tuifixtures import OTHER_TAG, TAG, build_ledger
from waiting import wait_until

POLL = 0.05


def header(dashboard) -> str:
    return str(dashboard.query_one("#status-bar").render())


async def test_plot_and_header_keep_the_chosen_tag_while_other_tags_run(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path / "fx")
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        dashboard = app.dashboard
        await wait_until(pilot, lambda: dashboard.data is not None and dashboard.plot is not None)
        assert dashboard.data.progression.tag == OTHER_TAG  # its runs finished last
        assert "best mar6 0.985000 (#15)" in header(dashboard)
        assert dashboard.table.get_cell(str(fx.ids["baseline"]), "tag").plain == TAG
        with Ledger(fx.ledger_path) as writer:  # runs of a third tag start and finish meanwhile
            for i in range(3):
                exp_id = writer.register(agent="zed", tag="mar9", status="running", description=f"r{i}")
                writer.conn.execute("UPDATE experiments SET status = 'finished', decision = 'keep', "
                                    "val_bpb = 0.9, finished_at = ? WHERE id = ?", (time.time(), exp_id))
                writer.conn.commit()
        await wait_until(pilot, lambda: dashboard.data.experiment_count == len(fx.ids) + 3)
        await pilot.pause(0.3)
        assert dashboard.data.progression.tag == OTHER_TAG and "mar9" not in header(dashboard)
        await pilot.press("T")  # the next tag, in the order newest first
        await wait_until(pilot, lambda: dashboard.data.progression.tag == TAG)
        assert "best mar5 0.991000 (#9)" in header(dashboard)
        assert dashboard.table.row_count == len(fx.ids) + 3  # the table is not filtered
        legend = dashboard.query_one("#progression-legend")
        canvas = dashboard.plot.query_one("#progression-canvas")
        assert "keep" in str(legend.render()) and legend.region.bottom <= canvas.region.y


def test_progression_x_is_the_experiment_id(tmp_path: Path) -> None:
    fx = build_ledger(tmp_path / "fx")
    poller = LedgerPoller(fx.ledger_path, read_only=True, query=DashboardQuery(plot_tag=TAG))
    progression = poller.poll().progression
    poller.close()
    xs = {x for x, _, _ in progression.points}
    assert fx.ids["pending"] in xs and fx.ids["crash"] not in xs  # unmeasured runs have no point
    assert progression.first_id == 1 and progression.last_id == fx.ids["registered"]
    assert progression.best_steps[-1] == (fx.ids["registered"], pytest.approx(0.991))


def test_y_ticks_are_evenly_spaced_round_values() -> None:
    ticks = even_ticks(0.98531, 1.01152, 5)
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 and len(ticks) >= 3
    assert ticks[0] >= 0.98531 and ticks[-1] <= 1.01152
    labels = tick_labels(ticks)
    assert len({len(label) for label in labels}) == 1  # same decimals everywhere
    assert tick_labels([0.98, 0.985, 0.99]) == ["0.980", "0.985", "0.990"]



async def test_the_demos_n_form_defaults_to_the_demos_tag(tmp_path: Path) -> None:
    from app.commands.demo import cockpit_settings
    from app.demo.sandbox import DemoSession
    from app.tui.screens.new_agent import NewAgentModal
    from gitrepo import make_repo

    repo = make_repo(tmp_path / "sandbox")
    ledger_path = repo / ".autoresearch" / "ledger.db"
    Ledger(ledger_path).close()
    settings = cockpit_settings(repo, DemoSession("demo-nov29", [], "tmux"))
    app = make_app(ledger_path, settings=settings, poll_interval=POLL, watch=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.dashboard.data is not None)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, NewAgentModal))
        assert app.screen.default_tag == "demo-nov29"
        await pilot.press("escape")
