"""Every dashboard action through the keyboard or the command palette, asserting the ledger effect;
read-only mode hides the actions and writes nothing; and end to end in real tmux, a kill from the
TUI stops a run started by `cockpit run`."""
from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from textual.command import CommandList
from textual.widgets import Footer

from app.agents.panes import kill_server
from app.ledger.store import Ledger
from app.tui.app import make_app
from app.tui.palette import CockpitCommands
from app.tui.screens.adopt import AdoptChoiceModal
from app.tui.screens.confirm import ConfirmModal
from app.tui.screens.dashboard import DashboardScreen
from app.tui.screens.help import HelpScreen
from app.tui.screens.note import NoteModal
from app.tui.widgets.log_viewer import LogView, LogViewer
from gitrepo import commit_edit, git, make_repo
from runnerhelpers import agent_worktree, cockpit_env, make_project, pid_alive, start_cockpit
from tuifixtures import build_ledger, notifications
from waiting import wait_for, wait_until

POLL = 0.05


@pytest.fixture
def fx(tmp_path: Path):
    return build_ledger(tmp_path / "fx")


async def highlight(pilot, exp_id: int) -> DashboardScreen:
    dashboard = pilot.app.dashboard
    table = dashboard.table
    await wait_until(pilot, lambda: str(exp_id) in {r.key.value for r in table.ordered_rows})
    table.move_cursor(row=table.get_row_index(str(exp_id)))
    await wait_until(pilot, lambda: table.selected is not None and table.selected.id == exp_id)
    return dashboard


def screen_text(app) -> str:
    """What the terminal shows, as plain text."""
    import io

    from rich.console import Console

    console = Console(width=app.size.width, file=io.StringIO(), record=True, force_terminal=True)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


def footer_keys(app) -> set[str]:
    return {key.key for key in app.screen.query_one(Footer).children if hasattr(key, "key")}


def first_command(app) -> str:
    """The command at the top of the open command palette's list ("" while none is listed)."""
    lists = app.screen.query(CommandList)
    if not lists or not lists.first().option_count:
        return ""
    prompt = lists.first().get_option_at_index(0).prompt
    return getattr(prompt, "plain", str(prompt))


async def test_kill_asks_first_then_requests_the_kill(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    running = fx.ids["running"]
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight(pilot, running)
        await wait_until(pilot, lambda: "k" in footer_keys(app))
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("n")  # changed my mind: nothing written
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        with Ledger(fx.ledger_path, read_only=True) as ledger:
            assert ledger.get(running).kill_requested_at is None
        await pilot.press("k")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        with Ledger(fx.ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.events(running, kind="kill"))
            exp = ledger.get(running)
            assert exp.kill_requested_at is not None
            assert ledger.events(running, kind="kill")[0].actor == "human"
            assert exp.decision == "killed"  # the fixture's runner is gone: the cockpit stops it


@pytest.fixture
def quick_undo(monkeypatch: pytest.MonkeyPatch) -> float:
    """Approvals are written 1 s after their confirmation instead of 5 s."""
    from app.tui import experiment_flows

    monkeypatch.setattr(experiment_flows, "UNDO_S", 1.0)
    return 1.0


async def test_approve_and_reject_pending_keep_candidates(fx, tmp_path: Path, quick_undo) -> None:
    pending = fx.ids["pending"]
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight(pilot, fx.best_id)
        await pilot.pause()
        assert not {"a", "r"} & footer_keys(app)  # not pending: hidden
        dashboard = await highlight(pilot, pending)
        await wait_until(pilot, lambda: {"a", "r"} <= footer_keys(app))
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        assert dashboard.table.selected.id == pending  # the cursor stays on the approved run
        with Ledger(fx.ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.get(pending).review == "approved")
            assert ledger.get(pending).decision == "keep"
            assert [e.actor for e in ledger.events(pending, kind="approve")] == ["human"]
    other = build_ledger(tmp_path / "other")
    app = make_app(other.ledger_path, clock=other.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight(pilot, pending)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        with Ledger(other.ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.get(pending).review == "rejected")
            assert ledger.get(pending).decision == "discard"
            assert len(ledger.events(pending, kind="reject")) == 1


async def test_note_is_saved_on_the_experiment(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        await highlight(pilot, fx.ids["crash"])
        await pilot.press("N")
        await wait_until(pilot, lambda: isinstance(app.screen, NoteModal))
        await pilot.press("enter")  # empty: refused in place
        assert isinstance(app.screen, NoteModal)
        await pilot.press(*"router OOM [b]4x[/b]", "enter")
        with Ledger(fx.ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.notes(experiment_id=fx.ids["crash"]))
            note = ledger.notes(experiment_id=fx.ids["crash"])[0]
            assert note.text == "router OOM [b]4x[/b]" and note.author == "human"
            assert ledger.events(fx.ids["crash"], kind="note")


async def test_approve_can_be_undone_before_it_is_written(fx, quick_undo) -> None:
    pending = fx.ids["pending"]
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    told = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight(pilot, pending)
        await wait_until(pilot, lambda: "a" in footer_keys(app))
        assert "u" not in footer_keys(app)
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_until(pilot, lambda: app.pending_undo is not None)
        await pilot.press("u")
        await wait_until(pilot, lambda: any("undone" in m for m, _ in told))
        await pilot.pause(quick_undo * 2)
        with Ledger(fx.ledger_path, read_only=True) as ledger:
            assert ledger.get(pending).review == "pending" and not ledger.events(pending, kind="approve")


async def test_experiment_keys_do_nothing_while_the_agents_table_has_focus(fx, quick_undo) -> None:
    pending = fx.ids["pending"]
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        dashboard = await highlight(pilot, pending)
        await wait_until(pilot, lambda: "a" in footer_keys(app))
        dashboard.query_one("#agents-table").focus()
        await wait_until(pilot, lambda: "a" not in footer_keys(app))
        await pilot.press("a", "r", "k")
        await pilot.pause(quick_undo * 2)
        assert isinstance(app.screen, DashboardScreen)
        with Ledger(fx.ledger_path, read_only=True) as ledger:
            assert ledger.get(pending).review == "pending"


@pytest.mark.slow
async def test_palette_runs_experiment_commands(fx, quick_undo) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    pending = fx.ids["pending"]
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight(pilot, fx.ids["discard"])
        await pilot.press("ctrl+p")
        await pilot.press(*f"experiment: approve #{pending}")
        await wait_until(pilot, lambda: first_command(app).startswith(f"experiment: approve #{pending}"))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        with Ledger(fx.ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.get(pending).review == "approved")


async def test_palette_offers_only_what_applies(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight(pilot, fx.ids["running"])
        provider = CockpitCommands(app.screen)
        texts = {c.text for c in provider._commands("")}
        assert f"experiment: kill #{fx.ids['running']}" in texts
        assert f"experiment: approve #{fx.ids['pending']}" in texts
        assert f"experiment: adopt #{fx.best_id}" in texts
        assert f"experiment: kill #{fx.best_id}" not in texts
        assert {"view: help", "filter: clear", "view: tag mar5", "filter: agent bob"} <= texts
        numbered = {c.text for c in provider._commands("open #4242")}
        assert "experiment: open #4242" in numbered  # outside the window, still reachable


async def test_failed_action_is_reported_as_an_error(fx, quick_undo) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        told = notifications(app)
        await highlight(pilot, fx.best_id)
        app.run_flow("approve", fx.best_id)  # not pending: app.actions refuses
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        await wait_until(pilot, lambda: any(sev == "error" for _, sev in told))
        assert any("not awaiting review" in msg for msg, _ in told)


def ledger_digest(path: Path) -> tuple[str, int]:
    """The database file's hash and the size of its write-ahead log (SQLite's own -shm aside)."""
    wal = path.with_name(path.name + "-wal")
    return hashlib.sha256(path.read_bytes()).hexdigest(), wal.stat().st_size if wal.exists() else 0


async def test_read_only_hides_actions_and_writes_nothing(fx) -> None:
    before = ledger_digest(fx.ledger_path)
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        told = notifications(app)
        dashboard = await highlight(pilot, fx.ids["running"])
        await wait_until(pilot, lambda: "slash" in footer_keys(app) or "/" in footer_keys(app))
        assert not {"k", "a", "r", "o", "N"} & footer_keys(app)
        for exp_id, key in ((fx.ids["running"], "k"), (fx.ids["pending"], "a"),
                            (fx.ids["pending"], "r"), (fx.best_id, "o"), (fx.best_id, "N")):
            await highlight(pilot, exp_id)
            assert dashboard.check_action({"k": "kill", "a": "approve", "r": "reject", "o": "adopt",
                                           "N": "note"}[key], ()) is False
            await pilot.press(key)
            await pilot.pause()
            assert isinstance(app.screen, DashboardScreen)  # no confirm, no note dialog
        texts = {c.text for c in CockpitCommands(app.screen)._commands("")}
        assert not any(t.split(" #")[0] in {"experiment: kill", "experiment: approve",
                                            "experiment: reject", "experiment: adopt",
                                            "experiment: note"} for t in texts)
        app.run_flow("kill", fx.ids["running"])  # even asked directly, it refuses
        await pilot.pause()
        assert any("read-only" in msg and sev == "error" for msg, sev in told)
    assert ledger_digest(fx.ledger_path) == before


async def test_help_lists_every_key_from_the_bindings(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(100, 150)) as pilot:
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()
        text = app.export_screenshot()
        for binding in [*DashboardScreen.BINDINGS, *LogView.BINDINGS, *LogViewer.BINDINGS]:
            assert binding.description.replace(" ", "&#160;") in text, binding.description
        assert "Command&#160;palette" in text
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))


async def test_enter_opens_detail_and_c_compares_the_marked_one(fx) -> None:
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight(pilot, fx.ids["baseline"])
        await pilot.press("enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "DetailScreen")
        assert app.screen.exp_id == fx.ids["baseline"]
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("m")
        await highlight(pilot, fx.best_id)
        await wait_until(pilot, lambda: "c" in footer_keys(app))
        await pilot.press("c")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "CompareScreen")


# ---- adopt into main, on a real git repository ------------------------------------------------

@pytest.fixture
def repo(tmp_path: Path):
    main = make_repo(tmp_path / "repo")
    worktree = tmp_path / "wt"
    git(main, "worktree", "add", "--quiet", "-b", "autoresearch/t-a1", str(worktree), "main")
    parent = git(worktree, "rev-parse", "HEAD")
    sha = commit_edit(worktree, "train.py", "LR = 0.04", "LR = 0.03", "lower lr")
    ledger_path = main / ".autoresearch" / "ledger.db"
    with Ledger(ledger_path) as ledger:
        exp_id = ledger.register(agent="a1", tag="t", worktree=str(worktree),
                                 branch="autoresearch/t-a1", parent_sha=parent, commit_sha=sha,
                                 description="lower lr", status="finished", decision="keep",
                                 val_bpb=0.97)
    return main, worktree, ledger_path, exp_id


async def adopt_with(pilot, exp_id: int, modal: type, key: str) -> None:
    await highlight(pilot, exp_id)
    await wait_until(pilot, lambda: "o" in footer_keys(pilot.app))
    await pilot.press("o")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, modal), timeout=10)
    await pilot.press(key)


async def test_adopt_clean_lands_the_experiment_on_main(repo) -> None:
    main, worktree, ledger_path, exp_id = repo
    app = make_app(ledger_path, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await adopt_with(pilot, exp_id, ConfirmModal, "y")
        with Ledger(ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.get(exp_id).adopted_sha, timeout=10)
            assert ledger.get(exp_id).adopted_sha == git(main, "rev-parse", "HEAD")
            assert ledger.events(exp_id, kind="adopt")[0].detail["mode"] == "exact"
    assert (main / "train.py").read_text() == (worktree / "train.py").read_text()


async def test_adopt_when_main_moved_offers_merge_or_cancel(repo) -> None:
    main, worktree, ledger_path, exp_id = repo
    moved = commit_edit(main, "train.py", "DEPTH = 8", "DEPTH = 10", "another adoption")
    app = make_app(ledger_path, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await adopt_with(pilot, exp_id, AdoptChoiceModal, "c")  # cancel: main untouched
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert git(main, "rev-parse", "HEAD") == moved
        await adopt_with(pilot, exp_id, AdoptChoiceModal, "m")
        with Ledger(ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.get(exp_id).adopted_sha, timeout=10)
            assert ledger.get(exp_id).needs_rerun == 1
    merged = (main / "train.py").read_text()
    assert "DEPTH = 10" in merged and "LR = 0.03" in merged


# ---- end to end: the real `cockpit` in real tmux kills a run started by `cockpit run` ---------

def tmux(socket: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True,
                          check=True, timeout=30).stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_e2e_kill_from_the_tui_in_tmux_stops_cockpit_run(tmp_path: Path) -> None:
    main = make_project(tmp_path)
    worktree = agent_worktree(main, "alice", tag="e2e")
    pidfile = tmp_path / "train.pid"
    run = start_cockpit("run", "-m", "slow e2e run", cwd=worktree,
                        env=cockpit_env(STANDIN_STEPS="600", STANDIN_STEP_SECONDS="0.2",
                                        STANDIN_PIDFILE=str(pidfile)))
    db = main / ".autoresearch" / "ledger.db"
    socket = f"cockpit-e2e-{uuid.uuid4().hex[:12]}"
    cockpit_bin = Path(sys.executable).with_name("cockpit")
    try:
        wait_for(lambda: pidfile.exists(), timeout=60)
        train_pid = int(pidfile.read_text())
        tmux(socket, "new-session", "-d", "-s", "e2e", "-x", "80", "-y", "24", "-c", str(main),
             f"{cockpit_bin} --ledger {db}")
        screen = lambda: tmux(socket, "capture-pane", "-p", "-t", "e2e")  # noqa: E731
        wait_for(lambda: "slow e2e run" in screen() and "▶" in screen(), timeout=60)
        wait_for(lambda: "Kill" in screen(), timeout=20)  # the footer offers it for this row
        assert "alice" in screen()
        tmux(socket, "send-keys", "-t", "e2e", "k")
        wait_for(lambda: "Kill experiment #1?" in screen(), timeout=20)
        tmux(socket, "send-keys", "-t", "e2e", "y")
        wait_for(lambda: not pid_alive(train_pid), timeout=20)
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0 and "KILLED" in out, err
        with Ledger(db, read_only=True) as ledger:
            exp = ledger.get(1)
            assert exp.decision == "killed" and exp.kill_requested_at is not None
            assert [e.actor for e in ledger.events(1, kind="kill")] == ["human"]
        wait_for(lambda: "☠ killed" in screen(), timeout=20)
        tmux(socket, "send-keys", "-t", "e2e", "q")  # quits: the pane's only process ends
        wait_for(lambda: subprocess.run(["tmux", "-L", socket, "has-session", "-t", "e2e"],
                                        capture_output=True).returncode != 0, timeout=20)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        kill_server(socket)  # also removes the socket file


async def test_detail_screen_has_the_experiments_actions(fx, quick_undo) -> None:
    from app.tui.screens.detail import DetailScreen

    pending = fx.ids["pending"]
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight(pilot, pending)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.data)
        await wait_until(pilot, lambda: {"a", "r", "N"} <= footer_keys(app))
        assert not {"k", "O"} & footer_keys(app)  # finished, not kept: no kill, no adopt
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        with Ledger(fx.ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.get(pending).review == "approved")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen)
                         and "O" in footer_keys(app) and "a" not in footer_keys(app))


async def test_help_explains_every_symbol_the_table_shows(fx) -> None:
    from app.tui.widgets.experiments_table import LEGEND, state_label

    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=POLL)
    async with app.run_test(size=(100, 60)) as pilot:
        dashboard = await highlight(pilot, fx.ids["baseline"])
        explained = {part for symbol, _ in LEGEND for part in symbol.split()}
        for exp in dashboard.data.rows:
            symbols = [p for p in state_label(exp).split() if not p.isalpha() and not p.endswith("%")]
            assert set(symbols) <= explained, state_label(exp)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.2)
        assert re.search(r"g home +First row", screen_text(app))
        app.screen.query_one("#help-dialog").scroll_end(animate=False)
        await pilot.pause(0.2)
        assert re.search(r"⇣ +contended", screen_text(app))
