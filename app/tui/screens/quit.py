"""The question asked on quit when the cockpit started things (the demo's agents): stop them?"""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitModal(ModalScreen["bool | None"]):
    """y/enter: stop everything (the default), n: leave it running, escape: don't quit."""

    BINDINGS = [
        Binding("y", "answer(True)", "Stop all", id="quit.stop"),
        Binding("n", "answer(False)", "Leave running", id="quit.leave"),
        Binding("escape", "answer(None)", "Stay", id="quit.stay"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__(classes="modal")
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Static(Text(self.question), classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop all (y)", id="quit-stop", variant="primary")
                yield Button("Leave running (n)", id="quit-leave")
                yield Button("Stay (esc)", id="quit-stay")

    def on_mount(self) -> None:
        self.query_one("#quit-stop", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss({"quit-stop": True, "quit-leave": False}.get(event.button.id or ""))

    def action_answer(self, stop: bool | None) -> None:
        self.dismiss(stop)
