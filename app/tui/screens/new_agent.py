"""The small form behind `n`: a new agent's name, command, tag and kind.

Dismisses with a `NewAgentForm`, or None when cancelled. The name and tag are checked here with
the same rules as `cockpit agent new`, so a typo is fixed in place instead of failing later.
"""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static


@dataclass(frozen=True)
class NewAgentForm:
    name: str
    command: str  # "" for the default command
    tag: str  # "" for the default tag
    search: bool  # the built-in search agent (no LLM) instead of a command


class NewAgentModal(ModalScreen[NewAgentForm | None]):
    """Enter creates, escape cancels; the search checkbox replaces the command."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new_agent.cancel"),
        # before the focused widget's own enter (the checkbox would toggle): enter always creates
        Binding("enter", "submit", "Create", id="new_agent.create", priority=True, show=False),
    ]

    def __init__(self, *, command: str, tag: str, where: str) -> None:
        """`command` and `tag`: the defaults; `where`: where the pane will open, in words."""
        super().__init__(classes="modal")
        self.default_command = command
        self.default_tag = tag
        self.where = where

    def compose(self) -> ComposeResult:
        with Vertical(id="new-agent-dialog", classes="dialog"):
            yield Static("New agent", classes="dialog-title")
            yield Static(Text(f"A git worktree on branch autoresearch/<tag>-<name> from main, and "
                              f"the agent's command in a tmux pane {self.where}."), classes="dialog-body")
            with Horizontal(classes="form-row"):
                yield Label("name")
                yield Input(placeholder="e.g. ada: letters, digits, - or _", max_length=40,
                            id="new-agent-name")
            with Horizontal(classes="form-row"):
                yield Label("command")
                yield Input(value=self.default_command, id="new-agent-command")
            with Horizontal(classes="form-row"):
                yield Label("tag")
                yield Input(placeholder=f"{self.default_tag} (the default)", max_length=40,
                            id="new-agent-tag")
            yield Checkbox("search agent (built in, no LLM: constant mutations via cockpit run)",
                           id="new-agent-search")
            yield Static("", id="new-agent-error", classes="dialog-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Create (enter)", id="new-agent-create", variant="primary")
                yield Button("Cancel (esc)", id="new-agent-cancel")

    def on_mount(self) -> None:
        self.query_one("#new-agent-name", Input).focus()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        event.stop()
        self.query_one("#new-agent-command", Input).disabled = event.value

    def action_submit(self) -> None:
        focused = self.focused
        if focused is not None and focused.id == "new-agent-cancel":
            self.dismiss(None)
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "new-agent-create":
            self.submit()
        else:
            self.dismiss(None)

    def submit(self) -> None:
        """Dismiss with the form, or say in place what is wrong with it."""
        from app.agents.lifecycle import AgentError, validate_name, validate_tag  # loaded by now: no delay

        name = self.query_one("#new-agent-name", Input).value.strip()
        tag = self.query_one("#new-agent-tag", Input).value.strip()
        command = self.query_one("#new-agent-command", Input).value.strip()
        search = self.query_one("#new-agent-search", Checkbox).value
        try:
            validate_name(name)
            if tag:
                validate_tag(tag)
        except AgentError as exc:
            self.query_one("#new-agent-error", Static).update(Text(str(exc)))
            return
        if not search and not command:
            self.query_one("#new-agent-error", Static).update(
                Text("An agent needs a command (or tick the search agent)."))
            return
        self.dismiss(NewAgentForm(name, "" if search else command, tag, search))

    def action_cancel(self) -> None:
        self.dismiss(None)
