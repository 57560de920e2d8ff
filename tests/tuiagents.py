"""Test helper for the TUI's agent side: a private tmux server, agents in real worktrees, and
reading the agents panel.

Usage:
    from tuiagents import TmuxServer, register_agent, agents_cell
    server = TmuxServer.start()              # tmux -L cockpit-tuiag-<uuid>; server.kill() after
    server.enter(monkeypatch)                # this process now runs "inside" its cockpit pane
    wt = register_agent(ledger, main, "ada")  # worktree + ledger row, no pane
    agents_cell(app, "ada", "edits")         # "+1 −1"
    type_into(server.socket, pane_id, "ls")  # what a human at the pane would type (+ Enter)
"""
from __future__ import annotations

import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.widgets import Static

from app.agents import panes
from app.ledger.store import Ledger
from app.tui.widgets.pane_preview import PanePreview
from runnerhelpers import agent_worktree

ENV_CLEARED = ("TMUX", "TMUX_PANE", "COCKPIT_LEDGER", "COCKPIT_AGENT", "COCKPIT_TAG",
               "COCKPIT_WORKTREE", "COCKPIT_TMUX_SOCKET")
STAND_IN_COCKPIT = "exec sleep 600"  # pane 0 of a session, where the cockpit would run


def type_into(socket: str, pane_id: str, text: str) -> None:
    """Type `text` literally into a pane, then Enter, as a human at the terminal would."""
    for keys in (["-l", "--", text], ["Enter"]):
        subprocess.run(["tmux", "-L", socket, "send-keys", "-t", pane_id, *keys], check=True)


def preview_text(preview: PanePreview, part: str = "body") -> str:
    """What the pane preview shows now in its "title" or "body" line, as plain text."""
    return str(preview.query_one(f"#preview-{part}", Static).content)


def agent_pane(name: str, socket: str, session: str | None = None) -> panes.Pane | None:
    """The pane labelled with this agent's name (the @cockpit_agent option), if any."""
    return next((p for p in panes.list_panes(session, socket) if p.agent == name), None)


@dataclass
class TmuxServer:
    """A private tmux server with one session whose first pane stands in for the cockpit's."""

    socket: str
    session: str
    cockpit_pane: str

    @classmethod
    def start(cls, cwd: Path) -> TmuxServer:
        socket = f"cockpit-tuiag-{uuid.uuid4().hex[:12]}"
        first = panes.ensure_session("cockpit", STAND_IN_COCKPIT, cwd, title="cockpit",
                                     size=(200, 50), socket=socket)
        return cls(socket, first.session, first.pane_id)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    def enter(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Make this process look like the cockpit running in the session's first pane."""
        path = self.tmux("display-message", "-p", "#{socket_path}")
        pid = self.tmux("display-message", "-p", "#{pid}")
        monkeypatch.setenv("TMUX", f"{path},{pid},0")
        monkeypatch.setenv("TMUX_PANE", self.cockpit_pane)

    def active_pane(self) -> str:
        """The active pane of the session's current window."""
        return self.tmux("display-message", "-p", "-t", f"={self.session}:", "#{pane_id}")

    def kill(self) -> None:
        panes.kill_server(self.socket)


def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start outside tmux, with no cockpit environment inherited from whoever runs the tests."""
    for name in ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)


def register_agent(ledger: Ledger, main: Path, name: str, tag: str = "t1") -> Path:
    """A worktree on autoresearch/<tag>-<name> and a running agent row for it (no pane)."""
    worktree = agent_worktree(main, name, tag=tag)
    ledger.upsert_agent(name, actor="test", event="agent-new", tag=tag, branch=f"autoresearch/{tag}-{name}",
                        worktree=str(worktree), command="vanilla", kind="llm", state="running")
    return worktree


def agents_cell(app, name: str, column: str) -> str | None:
    """The agents table's cell for `name` as plain text, None while the agent has no row."""
    table = app.dashboard.query_one("#agents-table")
    if name not in {row.key.value for row in table.ordered_rows}:
        return None
    return table.get_cell(name, column).plain



