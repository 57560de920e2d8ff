"""Every key, generated from the screens' BINDINGS so it never goes stale."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HelpSection = tuple[str, Sequence[BindingType]]


class HelpScreen(ModalScreen[None]):
    """One table per screen: key, what it does; actions hidden in read-only mode are marked."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", id="help.close")]

    def __init__(self, sections: Iterable[HelpSection], *, hidden: frozenset[str] = frozenset(),
                 footer: str = "", legend: Sequence[tuple[str, str]] = ()) -> None:
        """`hidden`: action names unavailable here (read-only), listed but marked; `legend`:
        (symbol, meaning) for every symbol the screens show."""
        super().__init__(classes="modal")
        self.sections = list(sections)
        self.hidden = hidden
        self.footer = footer
        self.legend = list(legend)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog", classes="dialog"):
            yield Static("Keys", classes="dialog-title")
            for title, bindings in self.sections:
                yield Static(self._table(title, bindings), classes="help-section")
            if self.legend:
                yield Static(self._legend(), classes="help-section", id="help-legend")
            if self.footer:
                yield Static(self.footer, classes="dialog-body")

    def _legend(self) -> Table:
        table = Table(title="Symbols", title_justify="left", show_header=False, box=None,
                      padding=(0, 2, 0, 0), expand=False)
        table.add_column("symbol", no_wrap=True, style="bold")
        table.add_column("meaning")
        for symbol, meaning in self.legend:
            table.add_row(Text(symbol), Text(meaning))
        return table

    def _table(self, title: str, bindings: Sequence[BindingType]) -> Table:
        table = Table(title=title, title_justify="left", show_header=False, box=None,
                      padding=(0, 2, 0, 0), expand=False)
        table.add_column("key", no_wrap=True, style="bold")
        table.add_column("action")
        keys: dict[tuple[str, str], list[str]] = {}  # (action, description) -> key displays
        for binding in Binding.make_bindings(bindings):
            keys.setdefault((binding.action, binding.description), []).append(
                self.app.get_key_display(binding))
        for (action, description), displays in keys.items():
            name = action.split("(")[0]
            what = description or name.replace("_", " ")
            if name in self.hidden:
                what += " (not in read-only mode)"
            table.add_row(Text(" ".join(displays)), Text(what))
        return table
