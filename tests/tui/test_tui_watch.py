"""The TUI watching agents' worktrees (app/tui/watcher.py) with real watchfiles, real git
worktrees and a real ledger: live train.py diff stats and diffs; a vanilla agent's run.log and
results.tsv becoming an experiment and a deleted worktree marking its agent gone, recorded by the
supervisor (never by the TUI, which writes nothing itself) and shown live; a prompt quit."""
from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from textual.widgets import Static

from app.ledger.store import Ledger
from app.observe import runlog as observe_runlog
from app.tui.app import make_app
from app.tui.screens.agent_diff import AgentDiffModal
from app.tui.screens.dashboard import DashboardScreen
from app.tui.widgets.diff_view import DiffView
from app.tui.widgets.live_view import LiveView
from app.tui.widgets.pane_preview import PanePreview
from gitrepo import edit, git
from runnerhelpers import make_project, set_constant
from supervisorhelpers import running_supervisor
from tuiagents import agents_cell, clean_env, preview_text, register_agent
from tuifixtures import notifications
from waiting import wait_for, wait_until

POLL = 0.05
STARTUP = b"Vocab size: 8,192\nModel config: {'n_layer': 8}\n"
SUMMARY = (b"---\nval_bpb:          0.975000\ntraining_seconds: 300.1\ntotal_seconds:    325.9\n"
           b"peak_vram_mb:     45060.2\nmfu_percent:      39.80\ntotal_tokens_M:   499.6\n"
           b"num_steps:        953\nnum_params_M:     50.3\ndepth:            8\n")


def steps(first: int, last: int) -> bytes:
    return b"".join(f"\rstep {s:05d} ({s * 10:.1f}%) | loss: {4.0 - s * 0.01:.6f} | lrm: 1.00 | "
                    f"dt: 312ms | tok/sec: 52,480 | mfu: 0.0% | epoch: 1 | remaining: 59s    ".encode()
                    for s in range(first, last + 1))


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


@pytest.fixture(autouse=True)
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """No tmux or cockpit environment from outside, not in this repository; observed tails as
    in a fresh process."""
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    observe_runlog._TAILS.clear()
    yield
    observe_runlog._TAILS.clear()


@pytest.fixture
def main(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest.fixture
def ledger_path(main: Path) -> Path:
    path = main / ".autoresearch" / "ledger.db"
    Ledger(path).close()
    return path


def ada(ledger_path: Path, main: Path) -> Path:
    with Ledger(ledger_path) as ledger:
        return register_agent(ledger, main, "ada")


async def test_train_py_edits_show_live_as_a_diff_stat_and_a_diff(main: Path, ledger_path: Path) -> None:
    wt = ada(ledger_path, main)
    app = make_app(ledger_path, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "clean", timeout=10)
        edit(wt, "train.py", "NUM_STEPS = 6", "NUM_STEPS = 7")
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "+1 −1")
        preview = app.dashboard.query_one(PanePreview)
        assert "ada · no pane · train.py +1 −1" in preview_text(preview, "title")

        await pilot.press("e")  # what is it changing? the diff, highlighted, live while open
        await wait_until(pilot, lambda: isinstance(app.screen, AgentDiffModal))
        view = app.screen.query_one(DiffView)
        await wait_until(pilot, lambda: "+NUM_STEPS = 7" in view.plain)
        assert "-NUM_STEPS = 6" in view.plain and "against the branch head" in view.plain
        edit(wt, "train.py", "TOK_PER_SEC = 52480", "TOK_PER_SEC = 60000")
        await wait_until(pilot, lambda: "+TOK_PER_SEC = 60000" in view.plain)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "+2 −2")

        git(wt, "commit", "--quiet", "-am", "more steps, faster")  # train.py untouched: HEAD moved
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "clean", timeout=5)


async def test_a_vanilla_agents_run_log_and_results_tsv_become_an_experiment(
        main: Path, ledger_path: Path) -> None:
    wt = ada(ledger_path, main)
    sha = set_constant(wt, "VAL_BPB", 0.975)  # the vanilla agent commits, then runs by hand
    app = make_app(ledger_path, poll_interval=POLL)
    told = notifications(app)
    with running_supervisor(ledger_path) as supervisor:
        async with app.run_test(size=(120, 40)) as pilot:
            await _watch_vanilla_run(app, pilot, wt, ledger_path, sha)
    assert "rows imported (0 new, 1 matched to runs" in supervisor.out.getvalue()
    assert not [m for m, severity in told if severity == "error"]


async def _watch_vanilla_run(app, pilot, wt: Path, ledger_path: Path, sha: str) -> None:
    dashboard = app.dashboard
    await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "clean", timeout=10)
    runlog = wt / "run.log"
    runlog.write_bytes(STARTUP + steps(0, 3))  # `uv run train.py > run.log 2>&1`, by hand

    def observed():
        live = dashboard.data.live if dashboard.data else ()
        return next((e for e in live if e.agent == "ada"), None)

    await wait_until(pilot, observed, timeout=5)
    exp_id = observed().id
    live = dashboard.query_one(LiveView)
    progress = live.query_one("#live-progress", Static)
    await wait_until(pilot, lambda: live.exp_id == exp_id and str(progress.render()).startswith("step 00003"))
    append(runlog, steps(4, 6))
    await wait_until(pilot, lambda: str(progress.render()).startswith("step 00006"))
    append(runlog, b"\n" + SUMMARY)
    with Ledger(ledger_path, read_only=True) as ledger:
        await wait_until(pilot, lambda: ledger.get(exp_id).status == "finished")
        exp = ledger.get(exp_id)
        assert (exp.backend, exp.val_bpb, exp.decision, exp.commit_sha) == ("observed", 0.975, None, sha)
        assert exp.description == "VAL_BPB = 0.975" and exp.worktree == str(wt)

        (wt / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                                        f"{sha[:7]}\t0.975000\t44.0\tkeep\tlower val_bpb\n")
        await wait_until(pilot, lambda: ledger.get(exp_id).decision == "keep")
        assert ledger.get(exp_id).description == "lower val_bpb"
        assert len(ledger.experiments()) == 1  # the row matched the observed run: no duplicate
    table = dashboard.table
    await wait_until(pilot, lambda: table.experiment(exp_id) is not None
                     and table.experiment(exp_id).decision == "keep")


async def test_a_deleted_worktree_marks_its_agent_gone(main: Path, ledger_path: Path) -> None:
    wt = ada(ledger_path, main)
    app = make_app(ledger_path, poll_interval=POLL)
    told = notifications(app)
    with running_supervisor(ledger_path):
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "clean", timeout=10)
            shutil.rmtree(wt)
            with Ledger(ledger_path, read_only=True) as ledger:
                await wait_until(pilot, lambda: ledger.get_agent("ada").state == "gone")
                # whichever notices first (its watcher or its 3 s liveness upkeep) marks it, once
                gone = [e.actor for e in ledger.events() if e.kind == "agent-gone"]
                assert len(gone) == 1 and gone[0] in ("watcher", "supervisor"), gone
            await _shows_gone(app, pilot, told)


async def test_without_a_supervisor_the_tui_shows_but_records_nothing(
        main: Path, ledger_path: Path) -> None:
    """A writable cockpit with no supervisor: the vanilla run and the vanished worktree are shown
    as they are, but nothing is written, and the header says no supervisor runs."""
    wt = ada(ledger_path, main)
    with Ledger(ledger_path, read_only=True) as ledger:
        events_before = len(ledger.events())
    app = make_app(ledger_path, poll_interval=POLL)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "clean", timeout=10)
        (wt / "run.log").write_bytes(STARTUP + steps(0, 3) + b"\n" + SUMMARY)
        shutil.rmtree(wt)
        await wait_until(pilot, lambda: agents_cell(app, "ada", "state") == "gone", timeout=8)
        status = str(app.dashboard.query_one("#status-bar", Static).render())
        assert "need you" in status and "no supervisor" in status
    with Ledger(ledger_path, read_only=True) as ledger:
        assert ledger.experiments() == [] and ledger.get_agent("ada").state == "running"
        assert len(ledger.events()) == events_before


async def _shows_gone(app, pilot, told) -> None:
    await wait_until(pilot, lambda: agents_cell(app, "ada", "state") == "gone")
    await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "—")
    await pilot.pause(1.5)  # a tick or two later: still fine, nothing reported
    assert app.is_running and not [m for m, severity in told if severity == "error"]


@pytest.mark.slow
async def test_read_only_watches_and_shows_but_never_writes(main: Path, ledger_path: Path) -> None:
    wt = ada(ledger_path, main)
    with Ledger(ledger_path, read_only=True) as ledger:
        events_before = len(ledger.events())
    app = make_app(ledger_path, read_only=True, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "clean", timeout=10)
        edit(wt, "train.py", "NUM_STEPS = 6", "NUM_STEPS = 7")
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "+1 −1")
        (wt / "run.log").write_bytes(STARTUP + steps(0, 3) + b"\n" + SUMMARY)
        (wt / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"
                                        "abc1234\t0.975000\t44.0\tkeep\tby hand\n")
        shutil.rmtree(wt)
        await wait_until(pilot, lambda: agents_cell(app, "ada", "state") == "gone", timeout=8)
    with Ledger(ledger_path, read_only=True) as ledger:
        assert ledger.experiments() == [] and ledger.get_agent("ada").state == "running"
        assert len(ledger.events()) == events_before


async def test_quitting_stops_the_watcher_promptly(main: Path, ledger_path: Path) -> None:
    ada(ledger_path, main)
    app = make_app(ledger_path, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "clean", timeout=10)
        await pilot.press("q")
        started = time.monotonic()
    took = time.monotonic() - started
    wait_for(lambda: not [t for t in threading.enumerate() if t.name.startswith("cockpit-watch")], timeout=2,
             message="the watch thread outlived the app")
    assert took < 3, f"quitting took {took:.1f} s"
