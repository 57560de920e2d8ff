"""Colours that stay legible: the dashboard's text in every built-in theme (light ones used to
show white on light grey), and diffs where tints fail: in every theme and in 256 colours (tmux's
default), added and removed lines carry their sign on a solid block that differs from the
background and from each other, with readable contrast; snapshots in a light theme and as a
256-colour terminal shows them."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from test_tui_detail import diff_repo, fixed_git_dates, set_fields
from textual.widgets import Footer

from app.tui.app import make_app
from app.tui.screens.detail import DetailScreen
from app.tui.widgets.diff_view import DiffView
from app.tui.widgets.theme_colour import contrast, in_256
from tuifixtures import build_ledger
from waiting import wait_until

SIZE = (100, 32)
MIN_CONTRAST = 3.0  # WCAG's minimum for large or bold text
MIN_TEXT_CONTRAST = 2.2  # any text we colour (the table cursor of gruvbox, Textual's, is 2.36)
DECOR = set("▔▁▏▕▇█▀▄▌▐─│ ")  # borders and scrollbars: not text
OUR_WIDGETS = ("#status-bar", "#agents-panel", "#table-status", "#experiments", "#live-view")


def low_contrast_text(app, selectors) -> list[tuple[float, str]]:
    """(contrast, text) of every coloured text segment under `selectors` below MIN_TEXT_CONTRAST."""
    regions = [app.screen.query_one(s).region for s in selectors]
    lines = app.screen._compositor.render_update(full=True)
    console = Console(width=app.size.width, file=io.StringIO(), force_terminal=True,
                      color_system="truecolor")
    found, x, y = [], 0, 0
    for segment in console.render(lines):
        if segment.text == "\n":
            x, y = 0, y + 1
            continue
        style, start = segment.style, x
        x += len(segment.text)
        if (not style or not style.color or not style.bgcolor or set(segment.text) <= DECOR
                or not any(r.contains(start, y) for r in regions)):
            continue
        fg, bg = style.color.get_truecolor(), style.bgcolor.get_truecolor()
        ratio = contrast(tuple(fg), tuple(bg))
        if ratio < MIN_TEXT_CONTRAST:
            found.append((round(ratio, 2), segment.text.strip()))
    return found


async def test_dashboard_text_is_legible_in_every_theme(tmp_path: Path) -> None:
    """Theme colours are resolved where they are drawn (tables, agents, pane preview, live view):
    switching themes recolours everything, and no text is pale on pale or dark on dark."""
    fx = build_ledger(tmp_path / "fx")
    app = make_app(fx.ledger_path, clock=fx.clock, poll_interval=0.05)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.dashboard.data is not None and app.dashboard.table.row_count)
        await pilot.pause(0.5)
        problems = {}
        themes = [t for t in sorted(app.available_themes) if not t.startswith("ansi")]  # the terminal's
        for theme in themes:
            app.theme = theme
            await pilot.pause(0.3)
            found = low_contrast_text(app, OUR_WIDGETS)
            if found:
                problems[theme] = found[:3]
        assert not problems and len(themes) >= 10


@pytest.fixture
def repo_fx(tmp_path: Path, utc: None, monkeypatch: pytest.MonkeyPatch):
    fixed_git_dates(monkeypatch)
    repo = diff_repo(tmp_path)
    fx = build_ledger(Path(repo["repo"]) / ".autoresearch")
    set_fields(fx, "improved", worktree=str(repo["repo"]), parent_sha=repo["base"], commit_sha=repo["exp"])
    return fx


def show_diff(fx, theme: str | None = None):
    async def run_before(pilot) -> None:
        if theme:
            pilot.app.theme = theme
        screen = DetailScreen(fx.ledger_path, fx.ids["improved"], True)
        await pilot.app.push_screen(screen)
        view = screen.query_one("#diff-parent-view", DiffView)
        await wait_until(pilot, lambda: view.result is not None)
        await pilot.press("p")
        footer = screen.query_one(Footer)
        await wait_until(pilot, lambda: "+DEPTH" in view.plain and len(footer.children) > 2
                         and screen.data is not None)
        await pilot.pause(0.3)
    return run_before


async def test_diff_signs_are_legible_in_every_theme_and_in_256_colours(repo_fx) -> None:
    app = make_app(repo_fx.ledger_path, read_only=True, clock=repo_fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        await show_diff(repo_fx)(pilot)
        view = app.screen.query_one("#diff-parent-view", DiffView)
        checked = 0
        for theme in sorted(app.available_themes):
            app.theme = theme
            await pilot.pause()
            background = app.screen.styles.background.rgb
            marks = {kind: view.mark_style(kind) for kind in ("added", "removed")}
            for depth in (lambda rgb: rgb, in_256):
                back = depth(background)
                blocks = {k: depth(s.background.rgb) for k, s in marks.items()}
                signs = {k: depth(s.foreground.rgb) for k, s in marks.items()}
                assert blocks["added"] != blocks["removed"], theme
                for kind in marks:
                    assert blocks[kind] != back, (theme, kind)
                    assert contrast(blocks[kind], signs[kind]) >= MIN_CONTRAST, (theme, kind)
            checked += 1
        assert checked >= 10  # every built-in theme, light ones included
        assert "-DEPTH = 8" in view.plain and "+DEPTH = 12" in view.plain


def test_diff_in_a_light_theme(snap_compare, repo_fx) -> None:
    app = make_app(repo_fx.ledger_path, read_only=True, clock=repo_fx.clock)
    assert snap_compare(app, terminal_size=SIZE, run_before=show_diff(repo_fx, "textual-light"))


async def test_diff_as_a_256_colour_terminal_shows_it(repo_fx) -> None:
    """The screen's ANSI output at 256 colours (what tmux's default terminal receives): the added and
    removed lines' signs sit on 256-colour blocks that differ from each other and from the page."""
    app = make_app(repo_fx.ledger_path, read_only=True, clock=repo_fx.clock)
    async with app.run_test(size=SIZE) as pilot:
        await show_diff(repo_fx)(pilot)
        console = Console(width=SIZE[0], height=SIZE[1], file=io.StringIO(), force_terminal=True,
                          color_system="256", legacy_windows=False)
        console.print(app.screen._compositor.render_update(full=True))
        ansi = console.file.getvalue()
    assert "\x1b[48;5;" in ansi  # 256-colour backgrounds
    lines = {sign: next(line for line in ansi.splitlines() if f"{sign}DEPTH" in strip_ansi(line))
             for sign in "+-"}
    blocks = {sign: sign_background(line, sign) for sign, line in lines.items()}
    page = re.findall(r"\x1b\[[0-9;]*48;5;(\d+)m", ansi)[0]
    assert blocks["+"] != blocks["-"] and page not in blocks.values(), (blocks, page)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def sign_background(line: str, sign: str) -> str:
    """The 256-colour background code in force where the diff sign is drawn."""
    background = ""
    for piece in re.split(r"(\x1b\[[0-9;]*m)", line):
        if piece.startswith("\x1b["):
            found = re.search(r"48;5;(\d+)", piece)
            background = found.group(1) if found else ("" if piece == "\x1b[0m" else background)
        elif piece.strip().startswith(sign):
            return background
    raise AssertionError(f"no {sign} sign in {strip_ansi(line)!r}")
