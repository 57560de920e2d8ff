"""app.agents.panes against a real tmux server on a private socket."""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.agents import panes
from tuiagents import agent_pane, type_into
from waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


@pytest.fixture
def socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private tmux server name, killed afterwards; the test runs as if outside tmux."""
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("TMUX_PANE", raising=False)
    name = f"cockpit-test-{uuid.uuid4().hex[:12]}"
    yield name
    panes.kill_server(name)
    assert not panes.list_panes(socket=name)


@pytest.fixture
def cockpit(socket: str, tmp_path: Path) -> panes.Pane:
    """A detached session whose first pane stands in for the cockpit."""
    return panes.ensure_session("cockpit", "exec sleep 600", tmp_path, size=(200, 50), socket=socket)


def test_ensure_session_creates_once(socket: str, tmp_path: Path) -> None:
    assert not panes.has_session("cockpit", socket)
    first = panes.ensure_session("cockpit", "exec sleep 600", tmp_path, title="cockpit", socket=socket)
    assert first.pane_id.startswith("%") and first.session == "cockpit"
    assert panes.has_session("cockpit", socket)
    again = panes.ensure_session("cockpit", "exec sleep 600", tmp_path, socket=socket)
    assert again.pane_id == first.pane_id
    assert len(panes.list_panes("cockpit", socket)) == 1
    assert panes.pane_info(first.pane_id, socket).title == "cockpit"


def test_split_pane_passes_env_cwd_title_and_agent(cockpit: panes.Pane, socket: str, tmp_path: Path) -> None:
    worktree = tmp_path / "wt"
    worktree.mkdir()
    cmd = 'echo "agent=$COCKPIT_AGENT in $(pwd)"; exec sleep 600'
    pane_id = panes.split_pane(cockpit.pane_id, cmd, worktree, {"COCKPIT_AGENT": "ada"}, "agent ada",
                               agent="ada", socket=socket)
    assert pane_id.startswith("%") and pane_id != cockpit.pane_id
    assert wait_for(lambda: f"agent=ada in {worktree}" in panes.capture(pane_id, socket=socket))
    found = agent_pane("ada", socket, "cockpit")
    assert found is not None and found.pane_id == pane_id and found.title == "agent ada"
    assert found.window_id == cockpit.window_id and not found.active  # the cockpit keeps focus
    assert panes.pane_alive(pane_id, socket)
    os.kill(panes.pane_pid(pane_id, socket), 0)  # a real, live process
    assert agent_pane("bo", socket) is None


def test_split_pane_runs_argv_without_shell(cockpit: panes.Pane, socket: str) -> None:
    pane_id = panes.split_pane(cockpit.pane_id, ["sleep", "600"], socket=socket)
    assert wait_for(lambda: panes.pane_info(pane_id, socket).command == "sleep")


def test_agents_take_a_column_and_the_cockpit_keeps_60_percent(socket: str, tmp_path: Path) -> None:
    cockpit = panes.ensure_session("wide", "exec sleep 600", tmp_path, size=(200, 50), socket=socket)
    made = [panes.split_pane(cockpit.pane_id, "exec sleep 600", agent=f"a{i}", socket=socket)
            for i in range(5)]
    info = {p.pane_id: p for p in panes.list_panes("wide", socket)}
    assert info[cockpit.pane_id].width == 120 and info[cockpit.pane_id].height == 50
    beside = [info[m] for m in made if info[m].window_id == cockpit.window_id]
    assert len(beside) == 4 and all(p.width == 79 and p.height >= 8 for p in beside)  # stacked
    assert info[made[4]].window_id != cockpit.window_id  # the column was full: their own window
    for columns, rows, expected in ((80, 24, 78), (200, 50, 120), (150, 40, 90)):
        subprocess.run(["tmux", "-L", socket, "resize-window", "-t", cockpit.window_id, "-x", str(columns),
                        "-y", str(rows)], check=True)
        assert wait_for(lambda expected=expected: panes.pane_info(cockpit.pane_id, socket).width == expected)


def test_narrow_window_puts_agents_in_their_own_window(socket: str, tmp_path: Path) -> None:
    cockpit = panes.ensure_session("small", "exec sleep 600", tmp_path, size=(90, 20), socket=socket)
    first = panes.split_pane(cockpit.pane_id, "exec sleep 600", agent="a", socket=socket)
    second = panes.split_pane(cockpit.pane_id, "exec sleep 600", title="agent b", agent="b", socket=socket)
    info = {p.pane_id: p for p in panes.list_panes("small", socket)}
    assert info[cockpit.pane_id].width == 90 and info[cockpit.pane_id].height == 20  # untouched
    assert info[first].window_id != cockpit.window_id
    assert info[second].window_id == info[first].window_id and info[second].agent == "b"
    prefix = subprocess.run(["tmux", "-L", socket, "show-options", "-gv", "prefix"], check=True,
                            capture_output=True, text=True).stdout.strip()
    assert f"{prefix} l (last window)" in panes.back_hint(socket)


def test_capture_is_plain_text(cockpit: panes.Pane, socket: str) -> None:
    pane_id = panes.split_pane(cockpit.pane_id, r"printf '\033[31mred alert\033[0m\n'; exec cat",
                               socket=socket)
    type_into(socket, pane_id, "hello; from the cockpit")
    assert wait_for(lambda: panes.capture(pane_id, socket=socket).count("hello; from the cockpit") == 2)
    text = panes.capture(pane_id, socket=socket)
    assert "red alert" in text and "\x1b" not in text
    assert text == text.rstrip()


def test_capture_returns_the_last_lines(cockpit: panes.Pane, socket: str) -> None:
    pane_id = panes.split_pane(cockpit.pane_id, "seq 1 300; exec sleep 600", socket=socket)
    assert wait_for(lambda: panes.capture(pane_id, 5, socket).endswith("300"))
    assert panes.capture(pane_id, 5, socket) == "296\n297\n298\n299\n300"
    assert panes.capture(pane_id, 120, socket).splitlines()[0] == "181"


def test_kill_pane_and_liveness(cockpit: panes.Pane, socket: str) -> None:
    pane_id = panes.split_pane(cockpit.pane_id, "exec sleep 600", agent="ada", socket=socket)
    pid = panes.pane_pid(pane_id, socket)
    assert panes.kill_pane(pane_id, socket)
    assert not panes.pane_alive(pane_id, socket)
    assert not panes.kill_pane(pane_id, socket)
    assert agent_pane("ada", socket) is None
    with pytest.raises(panes.PaneError, match=f"no tmux pane {pane_id}"):
        panes.pane_pid(pane_id, socket)
    assert wait_for(lambda: not _process_exists(pid))
    short = panes.split_pane(cockpit.pane_id, "sleep 0.3", socket=socket)
    assert wait_for(lambda: not panes.pane_alive(short, socket))


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def test_select_pane_moves_focus(cockpit: panes.Pane, socket: str) -> None:
    pane_id = panes.split_pane(cockpit.pane_id, "exec sleep 600", socket=socket)
    window_pane = panes.new_window("cockpit", "exec sleep 600", title="agents", socket=socket)
    panes.select_pane(pane_id, socket)
    active = {p.pane_id for p in panes.list_panes("cockpit", socket) if p.active}
    assert pane_id in active and cockpit.pane_id not in active
    panes.select_pane(window_pane, socket)
    assert panes.pane_info(window_pane, socket).window_active
    assert not panes.pane_info(pane_id, socket).window_active


def test_kill_server_removes_the_socket_of_a_server_that_already_exited(socket: str, tmp_path: Path) -> None:
    gate = tmp_path / "end"
    pane = panes.ensure_session("brief", f"while [ ! -e {gate} ]; do sleep 0.05; done", tmp_path,
                                socket=socket)
    path = Path(subprocess.run(["tmux", "-L", socket, "display-message", "-p", "-t", pane.pane_id,
                                "#{socket_path}"], capture_output=True, text=True).stdout.strip())
    gate.touch()
    assert wait_for(lambda: not panes.list_panes(socket=socket))  # its only session ended
    assert path.is_socket()  # tmux leaves the file behind
    panes.kill_server(socket)
    assert not path.exists()


def test_errors_are_clear(socket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    assert panes.list_panes(socket=socket) == []  # no server yet
    assert not panes.inside_tmux() and panes.current_pane() is None
    with pytest.raises(panes.PaneError, match="not inside tmux"):
        panes.split_pane(cmd="true", socket=socket)
    with pytest.raises(panes.PaneError, match="no tmux session named 'ghost'"):
        panes.list_panes("ghost", socket)
    with pytest.raises(panes.PaneError, match="no tmux pane %999"):
        panes.split_pane("%999", socket=socket)
    with pytest.raises(ValueError):
        panes.kill_server("")
    monkeypatch.setenv("TMUX", "/tmp/tmux-0/default,1,0")
    monkeypatch.setenv("TMUX_PANE", "%3")
    assert panes.inside_tmux() and panes.current_pane() == "%3"
