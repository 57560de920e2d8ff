"""`cockpit log FILE` (Pilot, 80×24) on real fork logs: End shows the summary, a mid-run `\\r`
progress step is found by search with its match count, next/previous, go-to-line, the traceback
jump, wrap, the `\\r` steps toggle, Esc clears a search and stays; the command's refusals."""
from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static

from app.cli import main
from app.ledger.store import Ledger, StepRow
from app.tui.app import make_app
from app.tui.detail_data import experiment_curve
from app.tui.screens.log import LogScreen
from app.tui.widgets.log_viewer import LogView, LogViewer
from realdata import REAL_RUNS
from waiting import wait_until

SIZE = (80, 24)
LONG_LOG = REAL_RUNS / "moe-run-compute90.log"  # 7,000 `\r` steps on one physical line
OOM_LOG = REAL_RUNS / "forks" / "miolini__autoresearch-macos__run@oom.log"


async def opened(pilot: Pilot) -> tuple[LogViewer, LogView]:
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, LogScreen)
                     and pilot.app.screen.query(LogView))
    viewer = pilot.app.screen.query_one(LogViewer)
    view = viewer.view
    await wait_until(pilot, lambda: view.index is not None and view.index.complete and view.page_height)
    await pilot.pause()
    return viewer, view


def status(viewer: LogViewer) -> str:
    return str(viewer.query_one("#log-status", Static).content)


def shown(view: LogView) -> list[str]:
    return [view.render_line(y).text.rstrip() for y in range(view.page_height)]


@pytest.mark.slow
async def test_end_search_a_progress_step_next_prev_goto_and_esc() -> None:
    app = make_app(None, log_file=LONG_LOG)
    async with app.run_test(size=SIZE) as pilot:
        viewer, view = await opened(pilot)
        assert view.line_count == 109 and not view.expanded
        await pilot.press("end")
        assert shown(view)[-1].endswith("109 router_aux_loss:  0.002516")

        await pilot.press("slash", *"step 03000", "enter")  # only in an overwritten `\r` step
        await wait_until(pilot, lambda: "match 1 of 1" in status(viewer))
        assert view.expanded and view.text_at(view.match_line).startswith("step 03000 (")
        assert view.first_line <= view.match_line < view.first_line + view.page_height
        assert "every \\r step shown" in status(viewer)

        await pilot.press("slash", *"step 0300", "enter")  # step 03000 … 03009
        await wait_until(pilot, lambda: "of 10" in status(viewer))
        first = view.match_line
        assert view.text_at(first).startswith("step 03000 (") and "match 1 of 10" in status(viewer)
        await pilot.press("n")
        await wait_until(pilot, lambda: view.match_line == first + 1)
        assert "match 2 of 10" in status(viewer)
        await pilot.press("N", "N")  # before the first: wraps to the last
        await wait_until(pilot, lambda: "match 10 of 10" in status(viewer))
        assert view.text_at(view.match_line).startswith("step 03009 (")

        await pilot.press("escape")  # clears the search, stays on the screen
        assert isinstance(app.screen, LogScreen)
        assert viewer.pattern == "" and view.highlight == "" and "match" not in status(viewer)

        await pilot.press("x")  # back to each line's last step, at the same place
        await wait_until(pilot, lambda: not view.expanded and view.line_count == 109)
        await pilot.press("colon", *"43", "enter")
        assert view.match_line == 42 and "line 43" in status(viewer)
        assert any(row.endswith("43 ---") for row in shown(view))
        await pilot.press("colon", *"99999", "enter")  # past the end: the last line
        assert view.match_line == 108


async def test_traceback_jump_wrap_and_a_log_without_one() -> None:
    app = make_app(None, log_file=OOM_LOG)
    async with app.run_test(size=SIZE) as pilot:
        viewer, view = await opened(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: "traceback at" in status(viewer))
        assert "Traceback (most recent call last)" in view.text_at(view.match_line)
        before = sum(1 for row in shown(view) if row.strip())
        await pilot.press("w")
        assert view.wrap and "wrap" in status(viewer)
        wrapped = shown(view)
        assert all(len(row) <= SIZE[0] for row in wrapped)
        assert sum(1 for row in wrapped if row.strip()) >= before
        await pilot.press("escape", "escape")  # clears; then nothing to clear: still here
        assert isinstance(app.screen, LogScreen) and viewer.pattern == ""
    clean = make_app(None, log_file=REAL_RUNS / "moe-run-smoke.log")
    async with clean.run_test(size=SIZE) as pilot:
        viewer, view = await opened(pilot)
        await pilot.press("t")
        await wait_until(pilot, lambda: "no traceback" in status(viewer))


async def test_untrusted_bytes_are_shown_literally(tmp_path: Path) -> None:
    log = tmp_path / "hostile.log"
    log.write_bytes(b"\x1b]8;;http://x\x07click\x1b]8;;\x07 [red]markup[/red]\x1b[2J\n")
    async with make_app(None, log_file=log).run_test(size=SIZE) as pilot:
        viewer, view = await opened(pilot)
        assert view.text_at(0) == "click [red]markup[/red]"
        await pilot.press("slash", *"[red]", "enter")
        await wait_until(pilot, lambda: "match 1 of 1" in status(viewer))


def test_the_command_refuses_what_it_cannot_show(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["log", str(tmp_path / "absent.log")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["log", str(tmp_path)]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_log_snapshot_80x24(snap_compare, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REAL_RUNS)  # the title shows the path as given
    async def run_before(pilot: Pilot) -> None:
        viewer, view = await opened(pilot)
        await pilot.press("slash", *"val_bpb", "enter")
        await wait_until(pilot, lambda: "match 1 of" in status(viewer))

    app = make_app(None, log_file=Path(LONG_LOG.name))
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_an_observed_runs_single_recorded_dot_gives_way_to_its_logs_curve(tmp_path: Path) -> None:
    """Ledgers written before observed runs kept every step hold one dot; the log has 7000."""
    with Ledger(tmp_path / "ledger.db") as ledger:
        exp_id = ledger.register(backend="observed", status="finished", description="post hoc")
        ledger.add_steps(exp_id, [StepRow(step=6999, t=1.0, progress_pct=100.0, loss=2.429389)])
        curve = experiment_curve(ledger, ledger.get(exp_id), LONG_LOG, {})
        assert len(curve) == 7000 and curve[-1] == (100.0, 2.429389) and curve[0][0] == 0.0
        sampled = ledger.register(backend="local", status="finished", description="runner")
        ledger.add_steps(sampled, [StepRow(step=s, t=s, progress_pct=s / 10, loss=3.0) for s in (1, 2)])
        assert experiment_curve(ledger, ledger.get(sampled), LONG_LOG, {}) == [(0.1, 3.0), (0.2, 3.0)]


@pytest.mark.slow
async def test_palette_and_help_offer_the_log_keys() -> None:
    async with make_app(None, log_file=OOM_LOG).run_test(size=SIZE) as pilot:
        viewer, view = await opened(pilot)
        await pilot.press("ctrl+p", *"first traceback")
        await pilot.pause()
        await pilot.press("enter")
        await wait_until(pilot, lambda: "traceback at" in status(viewer))
        await pilot.press("ctrl+p", *"toggle wrap")
        await pilot.pause()
        await pilot.press("enter")
        await wait_until(pilot, lambda: view.wrap)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "HelpScreen")
        titles = [str(getattr(s.content, "title", "")) for s in pilot.app.screen.query("Static")]
        assert titles[1].startswith("Log viewer") and "Dashboard" not in titles


async def test_search_finds_the_last_line_before_the_indexer_gets_there(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LogView, "_index_worker", lambda view, index: None)  # first screen only
    monkeypatch.setattr("app.tui.widgets.log_view.FIRST_SCREEN_LINES", 50)
    log = tmp_path / "big.log"
    log.write_text("".join(f"row {i:06d} " + "x" * 60 + "\n" for i in range(30_000)) + "the needle\n")
    async with make_app(None, log_file=log).run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(pilot.app.screen, LogScreen))
        viewer = pilot.app.screen.query_one(LogViewer)
        view = viewer.view
        await wait_until(pilot, lambda: view.line_count and view.page_height)
        assert not view.index.complete
        await pilot.press("slash", *"needle", "enter")
        await wait_until(pilot, lambda: "match 1 of 1" in status(viewer))
        await pilot.pause()
        assert view.match_line == 30_000 and any(row.endswith("30001 the needle") for row in shown(view))
