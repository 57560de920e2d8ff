"""The experiments table: one row per experiment, patched cell by cell as the ledger changes.

Decisions show a symbol and a word as well as a colour (never colour alone). Every string from
agents is sanitized and put in a `Text`, so `[red]x[/red]` shows as typed.
"""
from __future__ import annotations

from collections.abc import Sequence

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets.data_table import ColumnKey

from app.ledger.records import Experiment
from app.ledger.vocabulary import state_of, symbol
from app.logs.textsafe import sanitize
from app.tui.widgets.row_table import RowTable

FLAGS = (  # flag symbol after the decision, and what it means (one flag per row, in this priority)
    ("★", "adopted into main"),
    ("!", "integrity problem (prepare.py or eval constants differ): never compared"),
    ("‽", "implausible val_bpb: never kept without a human"),
    ("≠", "not comparable: measured on other hardware, attention path or eval constants"),
    ("⇣", "contended: far fewer steps or tok/s than its baseline, an unfair comparison"),
    ("≈", "near-miss: a discard within 0.002 of the best"),
    ("↻", "needs rerun: a 3-way merge nobody has measured"),
)
LEGEND = (  # every symbol the dashboard shows, for the help screen
    *((symbol(s), {"registered": "starting (registered)", "queued": "queued: waiting for a GPU (#: "
                   "its place)"}.get(s, s)) for s in (
        "keep", "discard", "repeat", "crash", "killed", "timeout", "lost", "pending", "running",
        "queued", "registered")),
    *FLAGS,
    ("Δ best", "val_bpb minus the tag's best kept run (best: it is the best)"),
    ("█░", "progress of a running experiment"),
    ("⚠ silent", "a running experiment without a heartbeat for a while"),
    ("—", "nothing yet / not applicable"),
    ("▼ ▲", "the column the table is sorted by"),
    ("● ◆ • ─", "plot: kept, pending, discarded runs; the running best"),
)
TONES = {  # state -> colour family (a component class, styled in styles/app.tcss)
    "keep": "good", "discard": "bad", "repeat": "bad", "crash": "error", "killed": "error",
    "timeout": "error", "lost": "error", "pending": "attention", "running": "live",
    "registered": "live", "queued": "attention",
}
COLUMNS = (  # key, label, fixed width (None: fits its content; the description fills what is left)
    ("id", "#", None), ("tag", "tag", 6), ("agent", "agent", 8), ("state", "decision", 11),
    ("val_bpb", "val_bpb", 8), ("delta", "Δ best", 7), ("description", "description", None),
)
MIN_ID_WIDTH = 3
SORTED_BY = {  # the poller's sort -> (column, arrow) shown in that column's header
    "newest": ("id", "▼"), "val_bpb": ("val_bpb", "▲"), "agent": ("agent", "▲"), "decision": ("state", "▲"),
}
CELL_PADDING = 2  # DataTable's default cell padding (one each side)
MIN_DESCRIPTION = 16


def state_label(exp: Experiment, place: int | None = None) -> str:
    """`✓ keep`, `◆ pending`, `▶ 42%`, `◌ queued #2` (its place in the GPU queue) ... plus one
    flag (FLAGS)."""
    state = state_of(exp)
    word = state
    if state == "running" and exp.progress_pct is not None:
        word = f"{exp.progress_pct:.0f}%"
    elif state == "registered":
        word = "starting"
    elif state == "queued" and place is not None:
        word = f"queued #{place}"
    present = (exp.adopted_sha, exp.integrity, exp.implausible, exp.not_comparable,
               exp.contended, exp.near_miss, exp.needs_rerun)
    flag = next((mark for (mark, _), on in zip(FLAGS, present) if on), "")
    return f"{symbol(state)} {word}" + (f" {flag}" if flag else "")


def one_line(text: str) -> str:
    """Untrusted text for a single cell: sanitized, whitespace runs collapsed."""
    return " ".join(sanitize(text).split())


def delta_text(exp: Experiment, best: dict[str, Experiment]) -> str:
    top = best.get(exp.tag)
    if exp.val_bpb is None or top is None or top.val_bpb is None:
        return ""
    if top.id == exp.id:
        return "best"
    return f"{exp.val_bpb - top.val_bpb:+.4f}"


class ExperimentsTable(RowTable):
    """Experiments in the order the poller gives; cursor stays on the same experiment."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", id="experiments.open")]

    COMPONENT_CLASSES = {
        "experiments-table--good", "experiments-table--bad", "experiments-table--error",
        "experiments-table--attention", "experiments-table--live", "experiments-table--muted",
    }

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(cursor_type="row", id=id)
        self._values: dict[str, tuple] = {}  # row key -> the plain values shown
        self._rows: dict[str, Experiment] = {}
        self._places: dict[int, tuple[int, int]] = {}  # queued experiment -> (place, queue length)
        self._description_width = 40
        self._id_width = MIN_ID_WIDTH  # digits of the largest id shown: never cut

    def on_mount(self) -> None:
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self.call_after_refresh(self._restyle))

    @property
    def selected(self) -> Experiment | None:
        if not self._rows or not self.is_valid_row_index(self.cursor_row):
            return None
        key = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        return self._rows.get(key or "")

    def experiment(self, exp_id: int) -> Experiment | None:
        return self._rows.get(str(exp_id))

    # -- updating -------------------------------------------------------------------------------

    def show(self, rows: Sequence[Experiment], best: dict[str, Experiment],
             places: dict[int, tuple[int, int]] | None = None) -> None:
        """Make the table show `rows` in this order, touching only cells that changed; `places`:
        queued experiments' places in the GPU queue."""
        self._places = places or {}
        selected = self.selected
        values = {str(exp.id): self._row_values(exp, best) for exp in rows}
        for key in [k for k in self._values if k not in values]:
            self.remove_row(key)
        for key, row in values.items():
            old = self._values.get(key)
            if old is None:
                self.add_row(*self._cells(row), key=key)
            elif old != row:
                for (column, *_), cell, old_cell in zip(COLUMNS, self._cells(row), self._cells(old)):
                    if cell != old_cell or cell.style != old_cell.style:
                        self.update_cell(key, column, cell, update_width=column == "description")
        self._values = values
        self._rows = {str(exp.id): exp for exp in rows}
        id_width = max([MIN_ID_WIDTH, *(len(str(exp.id)) for exp in rows)])
        if id_width != self._id_width:
            self._id_width = id_width
            self.on_resize()
        order = list(values)
        if [row.key.value for row in self.ordered_rows] != order:
            position = {key: index for index, key in enumerate(order)}
            self.sort("id", key=lambda cell: position[cell.plain.strip()])
        if selected is not None and str(selected.id) in values:
            index = self.get_row_index(str(selected.id))
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)

    def show_sort(self, sort: str) -> None:
        """Mark the sorted column's header with the direction of the sort."""
        column, arrow = SORTED_BY.get(sort, ("", ""))
        for key, label, _width in COLUMNS:
            wanted = f"{label}{arrow}" if key == column else label
            header = self.columns[ColumnKey(key)]
            if header.label.plain != wanted:
                header.label = Text(wanted)
                self.refresh()

    def on_resize(self) -> None:
        fixed = self._id_width + sum(w for *_, w in COLUMNS if w) + CELL_PADDING * len(COLUMNS) + 2
        width = max(MIN_DESCRIPTION, self.size.width - fixed)
        if width != self._description_width:
            self._description_width = width
            self._restyle()

    def _restyle(self) -> None:
        """Re-render every row (theme or width changed): same rows, fresh cells."""
        for key, row in self._values.items():
            for (column, *_), cell in zip(COLUMNS, self._cells(row)):
                self.update_cell(key, column, cell, update_width=column == "description")

    # -- cells ----------------------------------------------------------------------------------

    def _row_values(self, exp: Experiment, best: dict[str, Experiment]) -> tuple:
        place = self._places.get(exp.id, (None,))[0]
        return (exp.id, one_line(exp.tag), one_line(exp.agent), state_label(exp, place),
                TONES.get(state_of(exp), "muted"),
                exp.val_bpb_text if exp.val_bpb is not None else "", delta_text(exp, best),
                one_line(exp.description))

    def _style(self, tone: str) -> Style:
        return self.get_component_rich_style(f"experiments-table--{tone}", partial=True)

    def _cells(self, row: tuple) -> tuple[Text, ...]:
        exp_id, tag, agent, label, tone, val_bpb, delta, description = row
        summary = Text(description, no_wrap=True, overflow="ellipsis")
        summary.truncate(self._description_width, overflow="ellipsis")
        delta_tone = "good" if delta.startswith("-") or delta == "best" else "bad" if delta else "muted"
        return (
            Text(str(exp_id).rjust(self._id_width)),
            Text(tag, no_wrap=True, overflow="ellipsis"),
            Text(agent, no_wrap=True, overflow="ellipsis"),
            Text(label, style=self._style(tone), no_wrap=True),
            Text(val_bpb, justify="right"),
            Text(delta, style=self._style(delta_tone), justify="right"),
            summary,
        )
