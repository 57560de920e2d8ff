"""Detail screen (Pilot): metrics, flags, notes, events, diffs from a real git repo, the log viewer
on the real fork logs (jump to end, collapsed step line, search, crash tail, live follow), and
clear messages instead of crashes when a log or commit is missing."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Static, TabbedContent

from app.ledger.store import Ledger
from app.logs.index import LogIndex
from app.tui.app import make_app
from app.tui.screens.detail import DetailScreen
from app.tui.widgets.diff_view import DiffView
from app.tui.widgets.log_viewer import LogView, LogViewer
from app.tui.widgets.loss_curve import LossCurve, gap_to_reference, loss_at, thin
from gitrepo import commit_edit, git, make_repo
from realdata import REAL_RUNS
from tuifixtures import ANSI_DESCRIPTION, MARKUP_DESCRIPTION, TuiFixture, build_ledger
from waiting import wait_until

SIZE = (100, 32)


# ---------------------------------------------------------------------------
# Helpers (the compare and snapshot tests import these)

def fixed_git_dates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit dates fixed, so commit shas are the same on every run."""
    for name in ("GIT_AUTHOR_DATE", "GIT_COMMITTER_DATE"):
        monkeypatch.setenv(name, "2025-03-05T04:00:00+00:00")


def diff_repo(root: Path) -> dict[str, str | Path]:
    """A repo whose main moved on after an experiment branched: base → exp (DEPTH 12) → exp2
    (HEADS 8) on `exp`; main: base → LR 0.03."""
    repo = make_repo(root / "repo")
    base = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "-b", "exp")
    exp = commit_edit(repo, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper")
    exp2 = commit_edit(repo, "train.py", "HEADS = 4", "HEADS = 8", "more heads")
    git(repo, "checkout", "-q", "main")
    commit_edit(repo, "train.py", "LR = 0.04", "LR = 0.03", "lower lr")
    return {"repo": repo, "base": base, "exp": exp, "exp2": exp2}


def set_fields(fx: TuiFixture, name: str, **values: object) -> int:
    exp_id = fx.ids[name]
    with Ledger(fx.ledger_path) as ledger:
        ledger.update(exp_id, **values)
    return exp_id


async def open_detail(pilot: Pilot, fx: TuiFixture, exp_id: int, read_only: bool = True) -> DetailScreen:
    screen = DetailScreen(fx.ledger_path, exp_id, read_only)
    await pilot.app.push_screen(screen)
    await wait_until(pilot, lambda: screen.data is not None)
    await pilot.pause()
    return screen


async def open_log(pilot: Pilot, screen: DetailScreen, complete: bool = True) -> LogView:
    await pilot.press("l")
    await wait_until(pilot, lambda: screen.query(LogViewer))
    view = screen.query_one(LogView)
    await wait_until(pilot, lambda: view.index is not None and (view.index.complete or not complete)
                   and view.line_count and view.page_height)
    await pilot.pause()
    return view


def text(screen: DetailScreen, selector: str) -> str:
    return str(screen.query_one(selector, Static).content)


def shown_rows(view: LogView) -> list[str]:
    return [view.render_line(y).text for y in range(view.page_height)]


@pytest.fixture
def fx(tmp_path: Path, utc: None) -> TuiFixture:
    return build_ledger(tmp_path / "fx")



# ---------------------------------------------------------------------------
# Curve arithmetic

def test_curve_interpolation_gap_and_thinning() -> None:
    best = [(0.0, 10.0), (50.0, 5.0), (100.0, 3.0)]
    assert loss_at(best, 25.0) == 7.5 and loss_at(best, 50.0) == 5.0
    assert loss_at(best, 101.0) is None and loss_at([], 1.0) is None
    assert gap_to_reference([(10.0, 9.5), (25.0, 8.0)], best) == 0.5  # trailing by 0.5
    assert gap_to_reference([(25.0, 7.0)], best) == -0.5
    assert gap_to_reference([(25.0, 7.0)], None) is None
    points = [(float(i), float(i)) for i in range(10_000)]
    thinned = thin(points, 100)
    assert len(thinned) == 100 and thinned[0] == points[0] and thinned[-1] == points[-1]
    assert thin(points[:50], 100) == points[:50]


# ---------------------------------------------------------------------------
# Overview, flags, events, curves

@pytest.mark.slow
async def test_overview_flags_notes_events_and_curves(fx: TuiFixture) -> None:
    summary = ('{"val_bpb": 0.991, "num_steps": 953, "router_entropy": 1.332777, '
               '"attention": "fa3"}')
    exp_id = set_fields(fx, "approved", summary_json=summary, repeat_of=fx.ids["baseline"])
    near = set_fields(fx, "near_miss", contended=1, integrity=1, needs_rerun=1, metric_mismatch=1,
                      non_causal=1, over_budget=1, unmeasured=1)
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, fx, exp_id)
        assert f"#{exp_id}" in str(screen.query_one("#detail-title", Static).content)
        assert "✓ approved" in text(screen, "#badge-state")
        assert f"↻ repeat of #{fx.ids['baseline']}" in text(screen, "#badge-flags")
        metrics = text(screen, "#ov-metrics")
        assert "val_bpb" in metrics and "0.991000" in metrics
        assert "router_entropy" in metrics and "1.33278" in metrics  # a fork's extra key
        assert "attention" in metrics and "fa3" in metrics
        assert "momentum 0.95 is the sweet spot" in text(screen, "#ov-notes")
        assert "muon momentum 0.95" in text(screen, "#ov-description")
        assert "2025-03-05" in text(screen, "#ov-run")
        await pilot.press("e")
        table = screen.query_one("#events-table")
        kinds = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert kinds == ["register", "start", "decide", "approve"]
        assert str(table.get_row_at(3)[2]) == "human"
        await pilot.press("c")
        curve = screen.query_one(LossCurve)
        assert curve.main and curve.main[-1][0] == 100.0
        assert curve.reference is None  # the approved run is the tag's best: nothing to overlay
        main_diff = screen.query_one("#diff-main-view", DiffView)
        await wait_until(pilot, lambda: main_diff.result is not None)
        assert "No git repository found" in main_diff.plain  # fixture shas, no repository
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)

        screen = await open_detail(pilot, fx, near)
        flags = text(screen, "#badge-flags")
        for flag in ("≈ near-miss", "⇣ contended", "! integrity", "↻ needs rerun",
                     "≢ metric-mismatch", "→ non-causal", "+ over-budget", "∅ unmeasured"):
            assert flag in flags
        await pilot.press("escape")

        screen = await open_detail(pilot, fx, fx.ids["crash"])
        assert "‼ crash" in text(screen, "#badge-state")
        assert "RuntimeError: CUDA out of memory" in text(screen, "#ov-crash-tail")
        await pilot.press("escape")

        screen = await open_detail(pilot, fx, fx.ids["running"])
        curve = screen.query_one(LossCurve)
        assert curve.main[-1][0] == 42.0 and curve.reference and curve.reference[-1][0] == 100.0
        assert f"best #{fx.best_id}" in curve.caption and "trailing" in curve.caption


async def test_untrusted_text_is_shown_literally(fx: TuiFixture, tmp_path: Path) -> None:
    log = tmp_path / "escapes.log"
    log.write_bytes(b"\x1b[31mred\x1b[0m and [bold]not bold[/bold]\x1b]8;;http://x\x07link\n")
    exp_id = set_fields(fx, "pending", log_path=str(log))
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, fx, exp_id)
        assert MARKUP_DESCRIPTION in str(screen.query_one("#detail-title", Static).content)
        assert MARKUP_DESCRIPTION in text(screen, "#ov-description")
        view = await open_log(pilot, screen)
        assert view.text_at(0) == "red and [bold]not bold[/bold]link"
        assert "red and [bold]not bold[/bold]link" in shown_rows(view)[0]
        await pilot.press("escape")
        ansi = await open_detail(pilot, fx, fx.ids["ansi"])
        description = text(ansi, "#ov-description")
        assert "ansi red tied embeddings" in description and "\x1b" not in description
        assert ANSI_DESCRIPTION not in description


# ---------------------------------------------------------------------------
# Diffs

async def test_diffs_from_a_real_repo_and_missing_commits(tmp_path: Path, utc: None) -> None:
    repo = diff_repo(tmp_path)
    fx = build_ledger(Path(repo["repo"]) / ".autoresearch")
    exp_id = set_fields(fx, "improved", worktree=str(repo["repo"]), parent_sha=repo["base"],
                        commit_sha=repo["exp"])
    gone = set_fields(fx, "approved", worktree=str(tmp_path / "deleted-worktree"),
                      parent_sha=repo["exp"], commit_sha=repo["exp2"])
    bad_commit = set_fields(fx, "discard", worktree=str(repo["repo"]), parent_sha=repo["base"],
                            commit_sha="deadbeef" * 5)
    no_commit = set_fields(fx, "crash", worktree=str(repo["repo"]), commit_sha="")
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, fx, exp_id)
        parent = screen.query_one("#diff-parent-view", DiffView)
        main = screen.query_one("#diff-main-view", DiffView)
        await wait_until(pilot, lambda: parent.result is not None)
        await pilot.press("p")
        assert "-DEPTH = 8" in parent.plain and "+DEPTH = 12" in parent.plain
        assert "LR" not in parent.plain
        await pilot.press("m")
        assert "-LR = 0.03" in main.plain and "+LR = 0.04" in main.plain and "+DEPTH = 12" in main.plain
        await pilot.press("escape")
        # the worktree was deleted: the ledger's repository still has the commits
        screen = await open_detail(pilot, fx, gone)
        parent = screen.query_one("#diff-parent-view", DiffView)
        await wait_until(pilot, lambda: parent.result is not None)
        assert "-HEADS = 4" in parent.plain and "+HEADS = 8" in parent.plain
        await pilot.press("escape")
        for exp, message in ((bad_commit, "Commit deadbeefde is not in the repository"),
                             (no_commit, "No commit recorded")):
            screen = await open_detail(pilot, fx, exp)
            parent = screen.query_one("#diff-parent-view", DiffView)
            await wait_until(pilot, lambda view=parent: view.result is not None)
            assert message in parent.plain
            await pilot.press("escape")


# ---------------------------------------------------------------------------
# The log

@pytest.mark.slow
async def test_real_log_jump_to_end_collapsed_step_line_and_search(fx: TuiFixture) -> None:
    exp_id = set_fields(fx, "discard", log_path=str(REAL_RUNS / "moe-run-compute90.log"))
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, fx, exp_id)
        view = await open_log(pilot, screen)
        assert view.line_count == 109  # 7,000 `\r` step segments are one logical line
        assert view.text_at(39).startswith("step 06999 (100.0%) | loss: 2.429389")
        assert not view.crashed
        await pilot.press("end")
        rows = [row.rstrip() for row in shown_rows(view)]
        assert rows[-1].endswith("109 router_aux_loss:  0.002516")
        assert "of 109" in str(screen.query_one("#log-status", Static).content)
        await pilot.press("home")
        assert shown_rows(view)[0].lstrip().startswith("1 W0610")
        curve = screen.query_one(LossCurve)  # no steps in the ledger: read from the log's step lines
        assert len(curve.main) == 7000 and curve.main[-1] == (100.0, 2.429389)

        await pilot.press("slash", *"val_bpb", "enter")
        await wait_until(pilot, lambda: view.match_line is not None)
        assert view.match_line == 43 and view.text_at(43) == "val_bpb:          0.936404"
        assert view.first_line <= 43 < view.first_line + view.page_height
        await pilot.press("slash", *"router_z_loss", "enter")
        await wait_until(pilot, lambda: view.match_line == 93)
        await pilot.press("n")
        await wait_until(pilot, lambda: view.match_line == 94)
        await pilot.press("N")
        await wait_until(pilot, lambda: view.match_line == 93)
        await pilot.press("n", "n", "n")  # past the last: wraps to the model config line
        await wait_until(pilot, lambda: view.match_line == 9)
        assert "'router_z_loss_coef'" in view.text_at(9)
        assert "(wrapped)" in str(screen.query_one("#log-status", Static).content)
        await pilot.press("N")  # before the first: wraps to the last
        await wait_until(pilot, lambda: view.match_line == 95)
        await pilot.press("slash", *"step 00100", "enter")  # only in an overwritten `\r` step
        status = screen.query_one("#log-status", Static)
        await wait_until(pilot, lambda: "match 1 of 1" in str(status.content))
        assert view.expanded and view.text_at(view.match_line).startswith("step 00100 (")
        await pilot.press("escape")  # clears the search and stays on the detail screen
        assert pilot.app.screen is screen and not view.highlight
        await pilot.press("escape")  # nothing left to clear: back
        await wait_until(pilot, lambda: pilot.app.screen is not screen)


async def test_jump_to_end_before_the_index_is_complete(fx: TuiFixture, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()  # holds the background indexer until the end is on screen
    index_more = LogIndex.index_more

    def gated(index: LogIndex, *args: object) -> bool:
        if threading.current_thread() is not threading.main_thread():
            gate.wait(30)
        return index_more(index, *args)

    monkeypatch.setattr(LogIndex, "index_more", gated)
    log = tmp_path / "big.log"
    log.write_text("".join(f"row {i:06d} " + "x" * 80 + "\n" for i in range(20_000)) + "---\nthe end\n")
    exp_id = set_fields(fx, "crash", log_path=str(log))
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_detail(pilot, fx, exp_id)
            view = await open_log(pilot, screen, complete=False)
            assert view.text_at(0).startswith("row 000000") and not view.index.complete
            await pilot.press("end")
            await wait_until(pilot, lambda: view.tail_lines is not None)
            await pilot.pause()
            rows = shown_rows(view)
            assert rows[-1].strip() == "the end" and rows[-2].strip() == "---"
            assert rows[-3].strip().startswith("row 019999")  # no line numbers yet
            assert "end of file" in str(screen.query_one("#log-status", Static).content)
            gate.set()
            await wait_until(pilot, lambda: view.index.complete and view.tail_lines is None)
            await pilot.pause()
            rows = [row.strip() for row in shown_rows(view)]
            assert rows[-1] == "20002 the end" and view.is_vertical_scroll_end
    finally:
        gate.set()


@pytest.mark.slow
async def test_crash_tail_is_highlighted_for_a_crashed_run(fx: TuiFixture, tmp_path: Path) -> None:
    exp_id = set_fields(fx, "crash", log_path=str(REAL_RUNS / "moe-run-f3.log"))
    long_log = tmp_path / "long.log"
    long_log.write_text("".join(f"line {i}\n" for i in range(200)) + "Traceback: boom\n")
    long_id = set_fields(fx, "timeout", log_path=str(long_log))
    kept = set_fields(fx, "baseline", log_path=str(REAL_RUNS / "moe-run-f3.log"))
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, fx, exp_id)
        view = await open_log(pilot, screen)
        crash_bg = view.get_component_rich_style("log-view--crash-tail").bgcolor
        assert view.crashed and crash_bg is not None
        await pilot.press("end")
        last = view.render_line(view.page_height - 1)
        assert "step 02624 (9.8%)" in last.text  # the run stopped mid-training
        assert list(last)[-1].style.bgcolor == crash_bg
        assert "crash tail highlighted" in str(screen.query_one("#log-status", Static).content)
        await pilot.press("escape")

        screen = await open_detail(pilot, fx, long_id)
        view = await open_log(pilot, screen)
        assert list(view.render_line(0))[-1].style.bgcolor != crash_bg  # line 1 of 201
        await pilot.press("end")
        assert list(view.render_line(view.page_height - 1))[-1].style.bgcolor == crash_bg
        await pilot.press("escape")

        screen = await open_detail(pilot, fx, kept)
        view = await open_log(pilot, screen)
        assert not view.crashed
        assert list(view.render_line(0))[-1].style.bgcolor != crash_bg


@pytest.mark.slow
async def test_missing_log_is_a_message(fx: TuiFixture, tmp_path: Path) -> None:
    gone = set_fields(fx, "discard", log_path=str(tmp_path / "nowhere.log"))
    unrecorded = set_fields(fx, "killed", log_path="")
    moved = set_fields(fx, "approved", log_path=f"/elsewhere/.autoresearch/logs/{fx.ids['approved']}.log")
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, fx, gone)
        await pilot.press("l")
        assert "does not exist" in text(screen, "#log-message")
        await pilot.press("escape")
        screen = await open_detail(pilot, fx, unrecorded)
        await pilot.press("l")
        assert "No log recorded" in text(screen, "#log-message")
        await pilot.press("escape")
        missing = DetailScreen(fx.ledger_path, 9999, True)
        await app.push_screen(missing)
        await wait_until(pilot, lambda: "no experiment #9999" in text(missing, "#detail-title"))
        await pilot.press("escape")
        # a ledger copied from another machine: its logs are found beside it
        screen = await open_detail(pilot, fx, moved)
        view = await open_log(pilot, screen)
        assert view.path == fx.ledger_path.parent / "logs" / f"{moved}.log"
        assert view.text_at(1) == "Vocab size: 8,192"
        await pilot.press("escape")
        screen = await open_detail(pilot, fx, fx.ids["registered"])
        await pilot.press("l")
        assert "Waiting for the log" in text(screen, "#log-message")
        log = Path(screen.data.experiment.log_path)
        log.write_text("Vocab size: 8,192\n")
        with Ledger(fx.ledger_path) as ledger:  # the runner starts it: the ledger changes
            ledger.update(fx.ids["registered"], status="running")
        await wait_until(pilot, lambda: screen.query(LogView))
        view = screen.query_one(LogView)
        await wait_until(pilot, lambda: view.line_count == 1)
        assert view.text_at(0) == "Vocab size: 8,192"


async def test_live_run_follows_its_log_and_the_ledger(fx: TuiFixture) -> None:
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_detail(pilot, fx, fx.ids["running"])
        view = await open_log(pilot, screen)
        assert view.follow and view.line_count == 4
        assert view.text_at(3).startswith("step 00040 (40.0%)")
        log = Path(screen.data.experiment.log_path)
        with log.open("a") as out:
            out.write("\rstep 00043 (43.0%) | loss: 3.5 | remaining: 170s    ")
        await wait_until(pilot, lambda: (view.text_at(3) or "").startswith("step 00043"))
        assert view.line_count == 4
        with log.open("a") as out:
            out.write("".join(f"\nwarning {i}" for i in range(60)) + "\n")
        await wait_until(pilot, lambda: view.line_count == 64)
        await wait_until(pilot, lambda: view.is_vertical_scroll_end)
        with Ledger(fx.ledger_path) as ledger:
            ledger.add_note("still climbing at 43%", experiment_id=fx.ids["running"])
        await wait_until(pilot, lambda: "still climbing at 43%" in text(screen, "#ov-notes"))


@pytest.mark.slow
async def test_usable_at_80x24_by_keyboard(fx: TuiFixture) -> None:
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_detail(pilot, fx, fx.ids["improved"])
        tabs = screen.query_one(TabbedContent)
        for key, tab in (("c", "curve"), ("p", "diff-parent"), ("m", "diff-main"), ("l", "log"),
                         ("e", "events"), ("o", "overview")):
            await pilot.press(key)
            assert tabs.active == tab
        body = screen.query_one("#overview-body")
        assert body.has_focus and body.max_scroll_y > 0
        await pilot.press("end")
        assert body.scroll_y == body.max_scroll_y
        await pilot.press("q")
        assert not isinstance(app.screen, DetailScreen)
