"""Two experiments side by side: every metric with its delta (val_bpb: which is better, marked by a
symbol as well as colour), their loss curves overlaid (against progress or step), and the
train.py diff between their commits."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from app.ledger.store import LEDGER_ERRORS, Experiment, Ledger
from app.ledger.vocabulary import labelled, verdict_of
from app.logs.curve import Point
from app.logs.textsafe import sanitize
from app.tui.detail_data import experiment_curve, find_log
from app.tui.screens.detail import fmt, metrics_of, tab_label
from app.tui.widgets.diff_view import DiffResult, DiffView, find_repo, train_py_diff
from app.tui.widgets.loss_curve import LossCurve
from app.tui.widgets.metrics_table import MetricsTable

BETTER = "★"  # marks the better val_bpb (lower is better)


@dataclass(frozen=True)
class MetricRow:
    name: str
    a: object
    b: object

    @property
    def delta(self) -> float | None:
        """b − a for two numbers, else None."""
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (self.a, self.b))
        return float(self.b) - float(self.a) if numbers else None  # type: ignore[arg-type]


def metric_rows(a: Experiment, b: Experiment) -> list[MetricRow]:
    """val_bpb first, then every other metric either run reported, in the runs' order."""
    ma, mb = metrics_of(a), metrics_of(b)
    ma.setdefault("val_bpb", a.val_bpb)
    mb.setdefault("val_bpb", b.val_bpb)
    names = ["val_bpb"] + [k for k in dict.fromkeys([*ma, *mb]) if k != "val_bpb"]
    return [MetricRow(name, ma.get(name), mb.get(name)) for name in names]


def better_side(a: Experiment, b: Experiment) -> str | None:
    """'a' or 'b' for the lower val_bpb, None when they tie or one has none."""
    if a.val_bpb is None or b.val_bpb is None or a.val_bpb == b.val_bpb:
        return None
    return "a" if a.val_bpb < b.val_bpb else "b"


class CompareScreen(Screen):
    """Metrics and train.py diff of experiments #a and #b; Esc goes back."""

    COMPONENT_CLASSES = {"compare--better", "compare--worse"}
    AUTO_FOCUS = "#compare-table"
    BINDINGS = [
        Binding("escape,q", "back", "Back", id="compare.back", tooltip="Back to the previous screen"),
        Binding("t", "show_tab('metrics')", "Metrics tab", show=False, id="compare.metrics"),
        Binding("d", "show_tab('diff')", "Diff tab", show=False, id="compare.diff"),
        Binding("l", "show_tab('curves')", "Loss curves tab", show=False, id="compare.curves"),
        Binding("x", "toggle_x", "Curves: step / progress", id="compare.x",
                tooltip="Loss against the step number or against training progress"),
    ]

    class _Loaded(Message):
        def __init__(self, a: Experiment, b: Experiment, diff: DiffResult,
                     curves: dict[bool, tuple[list[Point], list[Point]]]) -> None:
            super().__init__()
            self.a = a
            self.b = b
            self.diff = diff
            self.curves = curves  # by_step -> (a's points, b's points)

    class _Failed(Message):
        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(self, ledger_path: Path, id_a: int, id_b: int) -> None:
        super().__init__()
        self.ledger_path = Path(ledger_path)
        self.id_a = id_a
        self.id_b = id_b
        self.rows: list[MetricRow] = []
        self.by_step = False
        self.curves: dict[bool, tuple[list[Point], list[Point]]] = {}

    def compose(self) -> ComposeResult:
        yield Static(Text(f"#{self.id_a} vs #{self.id_b} · loading…"), id="compare-title")
        with TabbedContent(initial="metrics", id="compare-tabs"):
            with TabPane(tab_label("t", "Metrics"), id="metrics"):
                yield MetricsTable(id="compare-table", cursor_type="row", zebra_stripes=True)
            with TabPane(tab_label("l", "Loss curves"), id="curves"):
                yield LossCurve(id="compare-curve")
            with TabPane(tab_label("d", "Diff"), id="diff"):
                yield DiffView(id="compare-diff")
        yield Footer()

    def on_mount(self) -> None:
        self._load()

    def action_back(self) -> None:
        self.dismiss()

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        target = {"metrics": "#compare-table", "diff": "#compare-diff"}.get(tab)
        if target:
            self.query_one(target).focus()

    def action_toggle_x(self) -> None:
        self.by_step = not self.by_step
        self.query_one(TabbedContent).active = "curves"
        self._show_curves()

    def _show_curves(self) -> None:
        a_points, b_points = self.curves.get(self.by_step, ([], []))
        self.query_one("#compare-curve", LossCurve).set_curves(
            b_points, a_points or None, labels=(f"#{self.id_b}", f"#{self.id_a}"), by_step=self.by_step)

    @work(thread=True, exclusive=True, group="compare-load", exit_on_error=False)
    def _load(self) -> None:
        try:
            with Ledger(self.ledger_path, read_only=True) as ledger:
                a, b = ledger.get(self.id_a), ledger.get(self.id_b)
                cache: dict[tuple, list[Point]] = {}
                logs = [find_log(e.log_path, ledger.path) for e in (a, b)]
                curves = {by_step: (experiment_curve(ledger, a, logs[0], cache, by_step),
                                    experiment_curve(ledger, b, logs[1], cache, by_step))
                          for by_step in (False, True)}
        except LEDGER_ERRORS as exc:
            self.post_message(self._Failed(str(exc)))
            return
        repo = find_repo([a.worktree, b.worktree, self.ledger_path.parent.parent])
        title = (f"train.py: #{a.id} {(a.commit_sha or '?')[:7]} → "
                 f"#{b.id} {(b.commit_sha or '?')[:7]}")
        diff = train_py_diff(repo, a.commit_sha, b.commit_sha, title)
        if not get_current_worker().is_cancelled:
            self.post_message(self._Loaded(a, b, diff, curves))

    @on(_Failed)
    def _failed(self, message: _Failed) -> None:
        self.query_one("#compare-title", Static).update(
            Text(f"Cannot compare #{self.id_a} and #{self.id_b}: {sanitize(message.reason)}"))
        self.query_one("#compare-diff", DiffView).set_diff(DiffResult("train.py", problem=message.reason))

    @on(_Loaded)
    def _loaded(self, message: _Loaded) -> None:
        a, b = message.a, message.b
        better = better_side(a, b)
        verdict = {"a": f"#{a.id} is better", "b": f"#{b.id} is better"}.get(better or "", "no winner")
        self.query_one("#compare-title", Static).update(
            Text(f"#{a.id} vs #{b.id} · val_bpb: {verdict} (lower is better)", no_wrap=True,
                 overflow="ellipsis"))
        self._fill_table(a, b, better)
        self.query_one("#compare-diff", DiffView).set_diff(message.diff)
        self.curves = message.curves
        self._show_curves()

    def _fill_table(self, a: Experiment, b: Experiment, better: str | None) -> None:
        good = self.get_component_rich_style("compare--better")
        bad = self.get_component_rich_style("compare--worse")

        def short(text: str) -> Text:
            return Text(" ".join(sanitize(text).split())[:60] or "—")

        rows: list[list[Text]] = []
        for label, va, vb in (
            ("agent", a.agent, b.agent), ("state", labelled(verdict_of(a)), labelled(verdict_of(b))),
            ("description", a.description, b.description), ("branch", a.branch, b.branch),
            ("commit", a.commit_sha[:10], b.commit_sha[:10]),
        ):
            rows.append([Text(label), short(va), short(vb), Text("")])
        self.rows = metric_rows(a, b)
        for row in self.rows:
            cells = [Text(fmt(row.a, row.name)), Text(fmt(row.b, row.name))]
            delta = row.delta
            delta_cell = Text("" if delta is None else f"{delta:+.6f}" if row.name == "val_bpb"
                              else f"{delta:+.6g}")
            if row.name == "val_bpb" and better:
                winner, loser = (0, 1) if better == "a" else (1, 0)
                cells[winner] = Text(f"{cells[winner].plain} {BETTER}", style=good)
                cells[loser].stylize(bad)
                delta_cell.stylize(good if better == "b" else bad)
            elif delta is None and None not in (row.a, row.b) and row.a != row.b:
                delta_cell = Text("differs")
            rows.append([Text(sanitize(row.name)), *cells, delta_cell])
        headers = ["", f"#{a.id}", f"#{b.id}", f"Δ (#{b.id} − #{a.id})"]
        self.query_one("#compare-table", MetricsTable).set_rows(headers, rows)
