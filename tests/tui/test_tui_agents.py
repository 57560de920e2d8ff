"""The TUI's agent side with real tmux on a private server, real git worktrees and a real ledger:
the pane preview (only while visible), `enter` focusing an agent's pane, `K` stopping an agent,
the `n` form creating one, palette entries, read-only mode, and a scripted agent that edits
train.py, commits and calls `cockpit run`, followed live."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.widgets import Checkbox, Input, Static

from app.agents import lifecycle as agents
from app.agents import panes
from app.ledger.store import Ledger
from app.observe import runlog as observe_runlog
from app.tui.app import make_app
from app.tui.palette import CockpitCommands
from app.tui.screens.confirm import ConfirmModal
from app.tui.screens.dashboard import DashboardScreen
from app.tui.screens.help import HelpScreen
from app.tui.screens.new_agent import NewAgentModal
from app.tui.widgets.pane_preview import PanePreview
from gitrepo import git
from runnerhelpers import make_project
from tuiagents import TmuxServer, agent_pane, agents_cell, clean_env, preview_text, type_into
from tuifixtures import build_ledger, notifications
from waiting import wait_until

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

POLL = 0.05


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)  # never the repository these tests run from
    observe_runlog._TAILS.clear()
    tmux = TmuxServer.start(tmp_path)
    yield tmux
    tmux.kill()


@pytest.fixture
def main(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest.fixture
def ledger_path(main: Path) -> Path:
    return main / ".autoresearch" / "ledger.db"


def create(ledger_path: Path, main: Path, name: str, server: TmuxServer, command: str) -> agents.Agent:
    """An agent as `cockpit agent new` makes it, its pane split beside the stand-in cockpit."""
    with Ledger(ledger_path) as ledger:
        return agents.create_agent(ledger, main, name, command=command, tag="tui",
                                   socket=server.socket, session=server.session).agent


async def highlight_agent(pilot, name: str) -> PanePreview:
    """Focus the agents table and put its cursor on `name`; returns the preview."""
    dashboard = pilot.app.dashboard
    table = dashboard.query_one("#agents-table")
    await wait_until(pilot, lambda: agents_cell(pilot.app, name, "state") is not None, timeout=10)
    table.focus()
    table.move_cursor(row=table.get_row_index(name))
    preview = dashboard.query_one(PanePreview)
    await wait_until(pilot, lambda: preview_text(preview, "title").startswith(f"{name} · "))
    return preview


def capturing(app) -> bool:
    """A pane capture is under way (the preview's thread worker)."""
    return any(w.group == "pane-preview" and not w.is_finished for w in app.workers)


@pytest.mark.slow
async def test_the_preview_shows_the_highlighted_agents_pane_only_while_visible(
        server: TmuxServer, main: Path, ledger_path: Path) -> None:
    create(ledger_path, main, "ada", server, "printf 'MARKER-ada [b]x[/b]\\n'; exec cat")
    bo = create(ledger_path, main, "bo", server, "printf 'MARKER-bo\\n'; exec cat")
    app = make_app(ledger_path, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        preview = await highlight_agent(pilot, "ada")
        await wait_until(pilot, lambda: "MARKER-ada [b]x[/b]" in preview_text(preview))  # literal text
        preview = await highlight_agent(pilot, "bo")
        await wait_until(pilot, lambda: "MARKER-bo" in preview_text(preview))
        assert preview_text(preview, "title").startswith(f"bo · pane {bo.pane_id} · train.py ")
        type_into(server.socket, bo.pane_id, "typed-later")
        await wait_until(pilot, lambda: "typed-later" in preview_text(preview))  # refreshed, live

        await pilot.press("question_mark")  # a modal covers the dashboard: the pane is not read
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await wait_until(pilot, lambda: not capturing(app))  # one started before the modal ends
        type_into(server.socket, bo.pane_id, "typed-while-covered")
        await pilot.pause(1.3)  # the behaviour under test: refresh periods pass without a capture
        assert "typed-while-covered" not in preview_text(preview)
        await pilot.press("escape")
        await wait_until(pilot, lambda: "typed-while-covered" in preview_text(preview))

    small = make_app(ledger_path, poll_interval=POLL)
    async with small.run_test(size=(80, 24)) as pilot:  # too small: preview hidden, nothing captured
        preview = small.dashboard.query_one(PanePreview)
        await wait_until(pilot, lambda: agents_cell(small, "bo", "edits") == "clean", timeout=10)
        await pilot.pause(1.2)  # the behaviour under test: refresh periods pass without a capture
        assert preview.region.height == 0 and "MARKER" not in preview_text(preview)
        await pilot.press("v")  # unless asked for
        await wait_until(pilot, lambda: "MARKER-ada" in preview_text(preview))


async def test_enter_focuses_the_agents_pane_and_says_how_to_attach(
        server: TmuxServer, main: Path, ledger_path: Path) -> None:
    create(ledger_path, main, "ada", server, "sleep 600")
    bo = create(ledger_path, main, "bo", server, "sleep 600")
    assert server.active_pane() != bo.pane_id  # agents open beside the cockpit, not focused
    app = make_app(ledger_path, poll_interval=POLL)
    told = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await highlight_agent(pilot, "bo")
        await pilot.press("enter")
        await wait_until(pilot, lambda: server.active_pane() == bo.pane_id)
        await wait_until(pilot, lambda: told)
        message, severity = told[-1]
        assert severity == "information"  # not inside its tmux server: how to attach
        assert f"tmux -L {server.socket} attach -t {server.session}" in message

        ada = agent_pane("ada", server.socket)
        commands = {c.text: c for c in CockpitCommands(app.screen)._commands("agent")}
        assert {"agent: new", "agent: focus ada", "agent: stop ada", "agent: diff ada"} <= set(commands)
        commands["agent: focus ada"].run()
        await wait_until(pilot, lambda: server.active_pane() == ada.pane_id)


async def test_K_stops_the_highlighted_agent_after_confirmation(
        server: TmuxServer, main: Path, ledger_path: Path) -> None:
    ada = create(ledger_path, main, "ada", server, "sleep 600")
    app = make_app(ledger_path, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        dashboard = app.dashboard
        await highlight_agent(pilot, "ada")
        dashboard.table.focus()  # K works from the experiments table too
        await wait_until(pilot, lambda: dashboard.check_action("stop_agent", ()) is True)
        await pilot.press("K")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("n")  # changed my mind
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert panes.pane_alive(ada.pane_id, server.socket)
        await pilot.press("K")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmModal))
        await pilot.press("y")
        with Ledger(ledger_path, read_only=True) as ledger:
            await wait_until(pilot, lambda: ledger.get_agent("ada").state == "stopped")
            assert [e.actor for e in ledger.events() if e.kind == "agent-stop"] == ["human"]
        assert panes.pane_info(ada.pane_id, server.socket) is None
        assert Path(ada.worktree).is_dir()  # the worktree and branch stay
        await wait_until(pilot, lambda: agents_cell(app, "ada", "state") == "stopped")
        await wait_until(pilot, lambda: dashboard.check_action("stop_agent", ()) is False)


async def test_the_n_form_creates_an_agent_beside_the_cockpit(
        server: TmuxServer, main: Path, ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server.enter(monkeypatch)  # the cockpit runs in the session's first pane
    app = make_app(ledger_path, poll_interval=POLL, tmux_socket=server.socket)
    told = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.dashboard is not None and app.dashboard.is_mounted)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, NewAgentModal), timeout=10)
        form = app.screen
        command = form.query_one("#new-agent-command", Input)
        assert command.value == "claude"  # agent_command's default
        await pilot.press(*"bad name")
        await pilot.press("enter")
        await pilot.pause()
        assert "not usable" in str(form.query_one("#new-agent-error", Static).render())
        assert isinstance(app.screen, NewAgentModal)

        form.query_one(Checkbox).value = True  # the search agent needs no command
        await pilot.pause()
        assert command.disabled
        form.query_one(Checkbox).value = False
        form.query_one("#new-agent-name", Input).value = "ada"
        command.value = "sleep 600"
        form.query_one("#new-agent-tag", Input).value = "tuinew"
        checkbox = form.query_one(Checkbox)
        checkbox.focus()
        await pilot.press("enter")  # on the checkbox too, enter creates (it does not toggle)
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert not checkbox.value
        await wait_until(pilot, lambda: any("agent ada: worktree" in m for m, _ in told), timeout=15)
        with Ledger(ledger_path, read_only=True) as ledger:
            agent = ledger.get_agent("ada")
        assert (agent.state, agent.branch, agent.tmux_socket) == ("running", "autoresearch/tuinew-ada",
                                                                 server.socket)
        worktree = main / ".autoresearch" / "worktrees" / "ada"
        assert Path(agent.worktree) == worktree.resolve() and (worktree / "train.py").is_file()
        assert git(worktree, "branch", "--show-current") == "autoresearch/tuinew-ada"
        pane = panes.pane_info(agent.pane_id, server.socket)
        cockpit = panes.pane_info(server.cockpit_pane, server.socket)
        assert pane is not None and pane.agent == "ada" and pane.window_id == cockpit.window_id
        await wait_until(pilot, lambda: agents_cell(app, "ada", "edits") == "clean", timeout=10)


@pytest.mark.slow
async def test_a_scripted_agent_in_a_pane_shows_up_live(
        server: TmuxServer, main: Path, ledger_path: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    script = tmp_path / "agent.sh"
    script.write_text(f"""#!/bin/sh
set -e
sed -i 's/^VAL_BPB = .*/VAL_BPB = 0.970000  # tuned/' train.py
echo EDITED
while [ ! -f "{go}" ]; do sleep 0.05; done
git commit -qam "lower val_bpb"
STANDIN_STEPS=30 STANDIN_STEP_SECONDS=0.1 cockpit run -m "scripted: lower val_bpb"
echo SCRIPT-DONE
exec sleep 600
""")
    script.chmod(0o755)
    create(ledger_path, main, "scripted", server, str(script))
    app = make_app(ledger_path, poll_interval=POLL)
    async with app.run_test(size=(120, 40)) as pilot:
        preview = await highlight_agent(pilot, "scripted")
        await wait_until(pilot, lambda: agents_cell(app, "scripted", "edits") == "+1 −1", timeout=10)
        await wait_until(pilot, lambda: "EDITED" in preview_text(preview))
        go.touch()
        await wait_until(pilot, lambda: "%" in (agents_cell(app, "scripted", "running") or ""), timeout=30)
        assert agents_cell(app, "scripted", "running").startswith("#1 ")
        # committed before the run: the watcher's diff stat catches up with the commit
        await wait_until(pilot, lambda: agents_cell(app, "scripted", "edits") == "clean", timeout=10)
        await wait_until(pilot, lambda: agents_cell(app, "scripted", "last") == "#1 ✓ 0.970000", timeout=30)
        await wait_until(pilot, lambda: "SCRIPT-DONE" in preview_text(preview))
        exp = app.dashboard.table.experiment(1)
        assert (exp.description, exp.decision, exp.agent) == ("scripted: lower val_bpb", "keep", "scripted")
    with Ledger(ledger_path, read_only=True) as ledger:
        assert [e.backend for e in ledger.experiments()] == ["local"]  # run.log not observed twice


async def test_read_only_offers_no_agent_actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clean_env(monkeypatch)
    fx = build_ledger(tmp_path / "fx")
    app = make_app(fx.ledger_path, read_only=True, clock=fx.clock, poll_interval=POLL)
    told = notifications(app)
    async with app.run_test(size=(120, 40)) as pilot:
        dashboard = app.dashboard
        await wait_until(pilot, lambda: agents_cell(app, "alice", "state") == "running")
        for action in ("new_agent", "stop_agent"):
            assert dashboard.check_action(action, ()) is False
        await pilot.press("n", "K")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        texts = {c.text for c in CockpitCommands(app.screen)._commands("agent")}
        assert "agent: diff alice" in texts
        assert not {t for t in texts if t.startswith(("agent: new", "agent: stop", "agent: focus"))}
        app.run_agent_flow("stop_agent", "alice")  # even asked directly, it refuses
        await pilot.pause()
        assert any("read-only" in m and severity == "error" for m, severity in told)
