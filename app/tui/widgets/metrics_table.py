"""A DataTable that is filled all at once, with column widths measured from its cells.

Textual's auto-sized columns are measured on idle, after rows added by a message handler may
already have been painted and cached at the old widths; measuring up front avoids that.
"""
from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

MAX_COLUMN_WIDTH = 80  # cells; longer cell texts are cut by the table


class MetricsTable(DataTable):
    """Rows of `Text` cells (never markup), replaced wholesale by set_rows()."""

    def set_rows(self, headers: Sequence[str], rows: Sequence[Sequence[Text]]) -> None:
        """Replace columns and rows; keeps the cursor row when it still exists."""
        cursor_row = self.cursor_row
        widths = [len(h) for h in headers]
        for row in rows:
            for i, cell in enumerate(row):
                widths[i] = max(widths[i], cell.cell_len)
        self.clear(columns=True)
        for header, width in zip(headers, widths):
            self.add_column(Text(header), width=min(width, MAX_COLUMN_WIDTH))
        self.add_rows(rows)
        if rows:
            self.move_cursor(row=min(cursor_row, len(rows) - 1), animate=False)
