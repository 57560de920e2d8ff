"""Dashboard: what it shows from a real ledger, live updates from other connections, filters,
empty states, untrusted text shown literally, the live log view and the 80x24 layout."""
from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from textual.widgets import Footer, Log

from app.agents.panes import kill_server
from app.ledger.store import Ledger, StepRow
from app.ledger.vocabulary import SYMBOLS
from app.tui.app import make_app
from app.tui.poller import DashboardQuery, LedgerPoller
from app.tui.screens.dashboard import DashboardScreen
from app.tui.widgets.agents_panel import AgentsPanel
from app.tui.widgets.experiments_table import ExperimentsTable
from app.tui.widgets.live_view import LiveView
from tuifixtures import EXPERIMENTS, MARKUP_DESCRIPTION, build_ledger, step_line
from waiting import wait_for, wait_until

POLL = 0.05  # poll interval for tests: "within a few poll intervals" stays well under a second


def cell(table: ExperimentsTable, exp_id: int, column: str) -> str:
    return table.get_cell(str(exp_id), column).plain


def row_ids(table: ExperimentsTable) -> list[int]:
    return [int(row.key.value) for row in table.ordered_rows]


async def loaded(pilot) -> DashboardScreen:
    dashboard = pilot.app.dashboard
    await wait_until(pilot, lambda: dashboard.data is not None and dashboard.table.row_count > 0)
    return dashboard


@pytest.fixture
def fx(tmp_path: Path):
    return build_ledger(tmp_path / "fx")


async def test_every_decision_shows_symbol_and_word(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        dashboard = await loaded(pilot)
        table = dashboard.table
        assert row_ids(table) == list(range(len(EXPERIMENTS), 0, -1))  # newest first
        expected = {"baseline": "✓ keep", "discard": "✗ discard", "crash": "‼ crash",
                    "killed": "☠ killed", "timeout": f"{SYMBOLS['timeout']} timeout", "lost": "? lost",
                    "pending": f"{SYMBOLS['pending']} pending", "running": "▶ 42%",
                    "registered": "○ starting", "near_miss": "✗ discard ≈"}
        for name, label in expected.items():
            assert cell(table, fx.ids[name], "state") == label, name
        assert cell(table, fx.best_id, "delta") == "best"
        assert cell(table, fx.ids["baseline"], "delta") == "+0.0069"
        assert cell(table, fx.ids["pending"], "val_bpb") == "0.990800"


async def test_untrusted_text_is_shown_literally(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(160, 40)) as pilot:
        table = (await loaded(pilot)).table
        assert cell(table, fx.ids["pending"], "description") == MARKUP_DESCRIPTION
        ansi = cell(table, fx.ids["ansi"], "description")
        assert ansi == "ansi red tied embeddings" and "\x1b" not in ansi
        assert "[red]x[/red]" in app.export_screenshot()  # rendered as typed, not as red "x"


async def test_agents_panel_shows_running_progress_and_last_result(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        agents = app.dashboard.query_one(AgentsPanel).query_one("#agents-table")
        def row(name: str) -> dict[str, str]:
            return {key: agents.get_cell(name, key).plain for key in ("state", "edits", "running", "last")}

        alice = row("alice")
        assert alice["state"] == "running" and alice["edits"] == "—"  # no worktree watched here
        assert alice["running"].startswith(f"#{fx.ids['running']} ███░") and "42%" in alice["running"]
        assert "2m54s" in alice["running"] and "loss 3.210" in alice["running"]
        assert alice["last"] == f"#{fx.ids['other_discard']} ✗ 0.988000"
        carol = row("carol")
        assert carol["state"] == "stopped" and carol["running"] == "—"


async def test_changes_from_another_connection_appear_within_a_few_polls(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        dashboard = await loaded(pilot)
        table = dashboard.table
        await pilot.press("down", "down", "down")  # cursor on #13, the running one
        running = fx.ids["running"]
        assert table.selected.id == running
        with Ledger(fx.ledger_path) as writer:
            new_id = writer.register(agent="dave", tag="mar5", description="new idea")
            started = time.monotonic()
            await wait_until(pilot, lambda: str(new_id) in {r.key.value for r in table.ordered_rows})
            assert time.monotonic() - started < 2.0
            assert row_ids(table)[0] == new_id and table.selected.id == running  # cursor stayed
            writer.add_steps(running, [StepRow(step=43, t=fx.now, progress_pct=43.0, loss=3.2)],
                             progress_pct=77.0, remaining_s=69.0, last_loss=3.1)
            await wait_until(pilot, lambda: cell(table, running, "state") == "▶ 77%")
            writer.update(running, event="finish", status="finished", decision="discard",
                          val_bpb=0.999)
            await wait_until(pilot, lambda: cell(table, running, "state") == "✗ discard")
        assert "dave" in dashboard.data.agent_names


def test_poller_reads_only_live_rows_when_only_live_columns_change(fx) -> None:
    poller = LedgerPoller(fx.ledger_path, read_only=True, query=DashboardQuery())
    first = poller.poll()
    assert first is not None and poller.poll() is None  # nothing changed: nothing loaded
    running = fx.ids["running"]
    with Ledger(fx.ledger_path) as writer:
        writer.add_steps(running, [], progress_pct=50.0)
    second = poller.poll()
    finished = [i for i, e in enumerate(first.rows) if not e.is_live]
    assert all(second.rows[i] is first.rows[i] for i in finished)  # untouched, not re-read
    assert next(e for e in second.rows if e.id == running).progress_pct == 50.0
    poller.close()


def test_poller_windows_a_big_ledger(tmp_path: Path) -> None:
    path = tmp_path / "big.db"
    Ledger(path).close()
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO experiments (tag, agent, status, decision, val_bpb, created_at) "
                         "VALUES ('t', 'a', 'finished', ?, ?, 0)",
                         [("keep" if i % 50 == 0 else "discard", 1.0 - i * 1e-6) for i in range(5000)])
    poller = LedgerPoller(path, read_only=True, query=DashboardQuery(limit=300))
    data = poller.poll()
    assert len(data.rows) == 300 and data.total == 5000 and data.rows[0].id == 5000
    assert data.progression.total == 5000 and len(data.progression.points) <= 3000
    assert data.progression.best_steps[-1][1] == pytest.approx(1.0 - 4950e-6)
    poller.close()


async def test_sort_filter_and_search(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        dashboard = await loaded(pilot)
        table = dashboard.table
        await pilot.press("s")  # by val_bpb, best first, unmeasured last
        await wait_until(pilot, lambda: row_ids(table)[0] == fx.ids["other_baseline"])
        assert row_ids(table)[1:3] == [fx.ids["other_discard"], fx.ids["pending"]]
        await pilot.press("d")  # decision filter: running (live) rows
        await wait_until(pilot, lambda: sorted(row_ids(table)) == [fx.ids["running"], fx.ids["registered"]])
        await pilot.press("d")  # pending
        await wait_until(pilot, lambda: row_ids(table) == [fx.ids["pending"]])
        await pilot.press("escape", "t")  # clear, then the first tag (newest: mar6)
        await wait_until(pilot, lambda: sorted(row_ids(table)) == [15, 16])
        assert dashboard.data.progression.tag == "mar6"
        await pilot.press("escape", "slash")
        await pilot.press(*"SMOOTHING")  # case-insensitive substring of a description
        await wait_until(pilot, lambda: row_ids(table) == [fx.ids["pending"]])
        await pilot.press("enter")  # back to the table, search kept
        assert app.focused is table and dashboard.poller.query.search == "SMOOTHING"
        await pilot.press("escape")
        await wait_until(pilot, lambda: table.row_count == len(EXPERIMENTS))
        await pilot.press("A")  # agent filter: the first agent
        await wait_until(pilot, lambda: {e.agent for e in dashboard.data.rows} == {"alice"})


async def test_no_ledger_tells_what_to_do_then_appears_by_itself(tmp_path: Path) -> None:
    path = tmp_path / "repo" / ".autoresearch" / "ledger.db"
    app = make_app(path, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        dashboard = app.dashboard
        await wait_until(pilot, lambda: dashboard.has_class("-no-ledger"))
        text = str(dashboard.query_one("#no-ledger").render())
        assert f"No ledger at {path}" in text and "cockpit run" in text
        assert not path.exists()  # looking does not create it
        with Ledger(path) as writer:
            writer.register(agent="a", tag="t", description="first")
        await wait_until(pilot, lambda: dashboard.table.row_count == 1, timeout=5)
        assert not dashboard.has_class("-no-ledger")


async def test_empty_ledger_explains_agents_and_experiments(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    app = make_app(path, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        dashboard = app.dashboard
        await wait_until(pilot, lambda: dashboard.data is not None)
        await pilot.pause()
        assert dashboard.has_class("-no-experiments")
        assert dashboard.query_one("#no-experiments").region.height > 0
        assert "cockpit run" in str(dashboard.query_one("#no-experiments").render())
        panel = dashboard.query_one(AgentsPanel)
        assert panel.has_class("-empty") and panel.query_one("#agents-empty").region.height > 0
        assert "cockpit agent new" in str(panel.query_one("#agents-empty").render())
        assert "Nothing running" in str(dashboard.query_one("#live-idle").render())


async def test_live_view_collapses_progress_into_one_line(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        live = app.dashboard.query_one(LiveView)
        log = live.query_one(Log)
        progress = live.query_one("#live-progress")
        await wait_until(pilot, lambda: live.exp_id == fx.ids["running"] and len(log.lines) >= 3)
        assert log.lines[:3] == ["Loading data from ~/.cache/autoresearch", "Vocab size: 8,192",
                                 "Model: 50.3M params"]
        await wait_until(pilot, lambda: str(progress.render()).startswith("step 00040"))
        log_path = Path(app.dashboard.experiment(fx.ids["running"]).log_path)
        with open(log_path, "a") as out:
            for step in range(41, 200):
                out.write(step_line(step, step / 2, 3.0))
        await wait_until(pilot, lambda: str(progress.render()).startswith("step 00199"))
        assert len(log.lines) == 3  # step segments never pile up as lines
        with open(log_path, "a") as out:
            out.write("\n\x1b[31mdone [b]x[/b]\x1b[0m\n")
        await wait_until(pilot, lambda: len(log.lines) == 5)
        assert log.lines[3].startswith("step 00199") and log.lines[4] == "done [b]x[/b]"
        assert str(progress.render()) == ""


async def test_80x24_layout_is_usable(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        dashboard = await loaded(pilot)
        await wait_until(pilot, lambda: len(dashboard.query_one(Footer).children) > 2)
        table, live = dashboard.table, dashboard.query_one(LiveView)
        agents = dashboard.query_one("#agents-table")
        assert table.region.height >= 8  # header + at least 7 experiments
        assert agents.region.height >= 4  # header + the three agents
        assert live.region.height >= 5 and live.query_one(Log).region.height >= 2
        assert not dashboard.query_one("#progression").display  # the plot waits for `p`
        for widget in (table, agents, live, dashboard.query_one(Footer)):
            assert widget.region.right <= 80 and widget.region.bottom <= 24
        await pilot.press("p")
        await pilot.pause()
        assert dashboard.query_one("#progression").region.height >= 8


async def test_big_window_reports_how_many_match(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    Ledger(path).close()
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO experiments (tag, agent, status, decision, val_bpb, description, "
                         "created_at) VALUES ('t', 'a', 'finished', 'discard', 1.0, ?, ?)",
                         [(f"idea {i}", time.time()) for i in range(1200)])
    app = make_app(path, poll_interval=POLL)
    async with app.run_test(size=(100, 30)) as pilot:
        dashboard = await loaded(pilot)
        assert dashboard.table.row_count == 500
        assert str(dashboard.query_one("#table-status").render()).startswith("500 of 1,200")


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_live_log_keeps_scrolling_past_max_lines_in_a_real_terminal(fx) -> None:
    """Past the Log's max_lines the content moves under a fixed scroll offset; what the terminal
    shows must still be the newest lines (read back from tmux, not from the widget)."""
    socket = f"cockpit-e2e-{uuid.uuid4().hex[:12]}"
    cockpit_bin = Path(sys.executable).with_name("cockpit")
    log_path = fx.root / "logs" / f"{fx.ids['running']}.log"

    def screen() -> str:
        return subprocess.run(["tmux", "-L", socket, "capture-pane", "-p", "-t", "live"],
                              capture_output=True, text=True, check=True).stdout

    try:
        subprocess.run(["tmux", "-L", socket, "new-session", "-d", "-s", "live", "-x", "100",
                        "-y", "30", f"{cockpit_bin} --read-only --ledger {fx.ledger_path}"], check=True)
        wait_for(lambda: "Model: 50.3M params" in screen(), timeout=30)
        with open(log_path, "a") as out:
            out.write("\n")
            for batch in range(6):
                out.write("".join(f"flood line {batch * 1000 + i:05d}\n" for i in range(1000)))
                out.flush()
                time.sleep(0.1)
        wait_for(lambda: "flood line 05999" in screen(), timeout=30)
        out_of_date = [f"flood line {n:05d}" for n in range(0, 5900, 100)]
        assert not any(line in screen() for line in out_of_date)
    finally:
        kill_server(socket)  # also removes the socket file
