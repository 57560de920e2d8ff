"""A one-line note about an experiment (a memory for the agents): dismisses with the text or None."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

MAX_NOTE_CHARS = 2000


class NoteModal(ModalScreen[str | None]):
    """Enter saves, escape cancels; an empty note is refused in place."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="note.cancel")]

    def __init__(self, title: str) -> None:
        super().__init__(classes="modal")
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="note-dialog", classes="dialog"):
            yield Static(Text(self.title_text), classes="dialog-title")
            yield Input(placeholder="what did we learn? (enter saves, escape cancels)",
                        max_length=MAX_NOTE_CHARS, id="note-input")
            yield Static("", id="note-error", classes="dialog-error")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            self.query_one("#note-error", Static).update("A note needs some text.")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
