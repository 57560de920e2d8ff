"""What needs the human, listed on one key (`!`); choosing an item jumps to it (dismisses with it).

`attention_part` is the header's part (app/tui/screens/status_lines.py): the count and whether the
supervisor is alive, first in the line so they stay visible at 80 columns.
"""
from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from app.logs.textsafe import sanitize
from app.supervisor.attention import AttentionItem, agent_labels
from app.tui.poller import DashboardData

__all__ = ["AttentionModal", "agent_labels", "attention_part", "item_line"]

LABELS = {"review": "review", "waiting": "waiting", "stuck": "stuck", "crash-streak": "crashes",
          "new-best": "new best", "supervisor": "supervisor"}


def attention_part(data: DashboardData) -> Text:
    """`⚑ 2 need you (!) · no supervisor` (reversed and bold: legible in every theme), or
    `⚑ 0 · supervised`."""
    items = data.attention
    down = any(item.kind == "supervisor" for item in items)
    text = Text.assemble((f"⚑ {len(items)} need you", "bold reverse"), " (!)") if items else Text("⚑ 0")
    text.append(" · ")
    text.append("no supervisor" if down else "supervised", style="bold" if down else "")
    return text


def item_line(item: AttentionItem) -> Text:
    return Text.assemble((f"{LABELS.get(item.kind, item.kind):<10} ", "bold"),
                         " ".join(sanitize(item.title).split()))


class AttentionModal(ModalScreen[AttentionItem | None]):
    """Enter on an item jumps to it (its experiment, or its agent); escape closes."""

    BINDINGS = [Binding("escape,q", "close", "Close", id="attention.close")]

    def __init__(self, items: Sequence[AttentionItem]) -> None:
        super().__init__(classes="modal")
        self.items = list(items)

    def compose(self) -> ComposeResult:
        with Vertical(id="attention-dialog", classes="dialog"):
            yield Static(Text(f"{len(self.items)} need you"), classes="dialog-title")
            yield OptionList(*(Option(item_line(item), id=str(index))
                               for index, item in enumerate(self.items)), id="attention-list")
            yield Static("enter: go to it · escape: close", classes="dialog-body")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.items[event.option_index])

    def action_close(self) -> None:
        self.dismiss(None)
