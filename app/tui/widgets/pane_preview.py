"""A preview of the highlighted agent's tmux pane, so a human sees what the agent is doing.

The pane is read with `capture-pane` every REFRESH_S, only while the preview is on screen (the
dashboard is the active screen and the preview is displayed: no modal above it, not hidden by a
small terminal), in a thread worker, one capture at a time. A pane that has shown the same text
for QUIET_AFTER captures is read every QUIET_EVERY ticks instead, until it changes or another
agent is highlighted: each capture runs a tmux client, the larger part of an idle cockpit's CPU.
Agent output is untrusted: it is sanitized and shown as plain `Text`, never markup.
"""
from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Static
from textual.worker import Worker

from app.agents import panes
from app.logs.textsafe import sanitize
from app.tui.poller import AgentStatus
from app.tui.widgets.experiments_table import one_line

REFRESH_S = 0.5  # seconds between captures while visible
QUIET_AFTER = 4  # unchanged captures before a pane counts as quiet
QUIET_EVERY = 3  # a quiet pane is captured on every third tick (1.5 s)


class PanePreview(Vertical):
    """Title line (agent, pane, train.py edits, keys) above the last lines of the agent's pane."""

    COMPONENT_CLASSES = {"pane-preview--muted"}

    class Captured(Message):
        """What a pane showed (`text` None: it could not be read, `problem` says why)."""

        def __init__(self, pane_id: str, text: str | None, problem: str = "") -> None:
            super().__init__()
            self.pane_id = pane_id
            self.text = text
            self.problem = problem

    def __init__(self, *, hints: str = "", id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.agent: AgentStatus | None = None
        self._hints = hints  # the keys that apply, shown at the end of the title
        self._shown: dict[str, Text] = {}
        self._edits = Text()
        self._worker: Worker | None = None
        self._unchanged = 0  # captures in a row that showed the same text
        self._ticks = 0

    def compose(self) -> ComposeResult:
        yield Static(id="preview-title")
        yield Static(id="preview-body")

    def on_mount(self) -> None:
        self.set_interval(REFRESH_S, self._tick)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.call_after_refresh(self._restyle))

    def _restyle(self) -> None:
        """Colours are baked into the texts: redo them in the new theme's."""
        agent, self.agent, self._shown = self.agent, None, {}
        self.show(agent, self._edits)

    def _tick(self) -> None:
        self._ticks += 1
        if self._unchanged < QUIET_AFTER or self._ticks % QUIET_EVERY == 0:
            self.refresh_capture()

    def show(self, agent: AgentStatus | None, edits: Text) -> None:
        """Follow `agent` (None: nothing highlighted); `edits` is its train.py diff stat."""
        previous, self.agent, self._edits = self.agent, agent, edits
        if agent is None:
            self._set("#preview-title", Text())
            self._set("#preview-body", Text())
            return
        title = Text.assemble((one_line(agent.name), "bold"), " · ",
                              f"pane {agent.pane_id}" if agent.pane_id else "no pane",
                              " · train.py ", edits)
        if self._hints:
            title.append(f" · {self._hints}", style=self._muted)
        self._set("#preview-title", title)
        if previous is None or (previous.name, previous.pane_id) != (agent.name, agent.pane_id):
            self._unchanged = 0
            self._set("#preview-body", self._no_pane_text(agent) if not agent.pane_id
                      else Text("reading the pane…", style=self._muted))
            self.refresh_capture()

    @property
    def _muted(self):
        return self.get_component_rich_style("pane-preview--muted", partial=True)

    def _no_pane_text(self, agent: AgentStatus) -> Text:
        name = one_line(agent.name)
        if not agent.worktree:
            text = f"Agent {name} is known from its experiments only: it has no pane to show."
        elif agent.state in ("stopped", "exited", "gone", "removed"):
            text = f"Agent {name} is {one_line(agent.state)}: no pane to show."
        else:
            text = f"No tmux pane is recorded for agent {name}."
        return Text(text, style=self._muted)

    def _set(self, selector: str, text: Text) -> None:
        """Update a Static only when its text changed, without a relayout (sizes are fixed in tcss)."""
        if self._shown.get(selector) != text:
            self._shown[selector] = text
            self.query_one(selector, Static).update(text, layout=False)

    @property
    def on_screen(self) -> bool:
        """The dashboard is the active screen and this preview takes up room on it."""
        return self.is_attached and self.screen.is_active and self.region.area > 0

    def refresh_capture(self) -> None:
        """Start a capture of the followed pane, if one is useful now and none is running."""
        agent = self.agent
        if agent is None or not agent.pane_id or not self.on_screen:
            return
        if self._worker is not None and not self._worker.is_finished:
            return
        lines = max(1, self.query_one("#preview-body").size.height)
        self._worker = self._capture(agent.pane_id, agent.tmux_socket or None, lines)

    @work(thread=True, group="pane-preview", exit_on_error=False)
    def _capture(self, pane_id: str, socket: str | None, lines: int) -> None:
        try:
            text = panes.capture(pane_id, lines, socket)
        except panes.PaneError as exc:
            self.post_message(self.Captured(pane_id, None, str(exc)))
            return
        self.post_message(self.Captured(pane_id, text))

    def on_pane_preview_captured(self, message: Captured) -> None:
        message.stop()
        if self.agent is None or message.pane_id != self.agent.pane_id:
            return  # another agent was highlighted meanwhile
        if message.text is None:
            body = Text(f"Pane {message.pane_id} cannot be read: {sanitize(message.problem)}",
                        style=self._muted)
        else:
            body = Text(sanitize(message.text), no_wrap=True, overflow="ellipsis")
        self._unchanged = self._unchanged + 1 if body == self._shown.get("#preview-body") else 0
        self._set("#preview-body", body)
