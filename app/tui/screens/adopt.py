"""Main moved since the experiment's parent: adopt anyway (exact), 3-way merge, or cancel."""
from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

EXPLAIN = ("Adopt anyway: main's train.py becomes exactly what was measured.\n"
           "3-way merge: keep main's newer changes too; committed and marked \"needs rerun\".")


class AdoptChoiceModal(ModalScreen[str | None]):
    """Dismisses with "exact", "merge" or None (cancel)."""

    BINDINGS = [
        Binding("e", "choose('exact')", "Adopt anyway", id="adopt.exact"),
        Binding("m", "choose('merge')", "3-way merge", id="adopt.merge"),
        Binding("escape,c", "choose(None)", "Cancel", id="adopt.cancel"),
    ]

    def __init__(self, offer_text: str) -> None:
        super().__init__(classes="modal")
        self.offer_text = offer_text

    def compose(self) -> ComposeResult:
        with Vertical(id="adopt-dialog", classes="dialog"):
            yield Static(Text(self.offer_text), classes="dialog-title")
            yield Static(EXPLAIN, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Adopt anyway (e)", id="adopt-exact", variant="warning")
                yield Button("3-way merge (m)", id="adopt-merge", variant="primary")
                yield Button("Cancel (c)", id="adopt-cancel")

    def on_mount(self) -> None:
        self.query_one("#adopt-cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss({"adopt-exact": "exact", "adopt-merge": "merge"}.get(event.button.id or ""))

    def action_choose(self, mode: str | None) -> None:
        self.dismiss(mode)
