"""A row-cursor DataTable with the jumps of less and vim: g / Home to the first row, G / End to
the last (DataTable's own Home / End move between columns, which a row cursor has no use for)."""
from __future__ import annotations

from textual.binding import Binding
from textual.widgets import DataTable


class RowTable(DataTable):
    BINDINGS = [
        Binding("g,home", "scroll_top", "First row", id="table.first", show=False),
        Binding("G,end", "scroll_bottom", "Last row", id="table.last", show=False),
    ]
