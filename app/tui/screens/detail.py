"""One experiment in full: metrics, flags, notes, audit events, train.py diffs, the log, the curve.

A thread worker polls the ledger's `data_version` and posts fresh data, so a running experiment's
page updates live; git diffs are computed once in their own worker; the log viewer indexes the
log itself. Everything from agents and logs is shown literally (sanitized, never markup).
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.style import Style
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import get_current_worker

from app import git
from app.ledger.schema import SUMMARY_COLUMNS
from app.ledger.store import LEDGER_ERRORS, Event, Experiment, Ledger
from app.ledger.vocabulary import actions_for, labelled, verdict_of
from app.logs.textsafe import sanitize
from app.tui.detail_data import DetailData, load_detail
from app.tui.widgets.diff_view import DiffResult, DiffView, find_repo, train_py_diff
from app.tui.widgets.log_viewer import LogViewer
from app.tui.widgets.metrics_table import MetricsTable

if TYPE_CHECKING:
    from app.logs.curve import Point
    from app.tui.widgets.loss_curve import LossCurve

CRASHED = ("crash", "timeout", "lost")  # decisions whose log tail is highlighted
TABS = (("o", "overview", "Overview"), ("c", "curve", "Curve"), ("p", "diff-parent", "vs parent"),
        ("m", "diff-main", "vs main"), ("l", "log", "Log"), ("e", "events", "Events"))
ACTIONS = (("k", "kill", "Kill"), ("a", "approve", "Approve"), ("r", "reject", "Reject"),
           ("O", "adopt", "Adopt"), ("N", "note", "Note"))  # key, flow, label (o is the Overview tab)
FLAGS = (("near_miss", "≈ near-miss"), ("contended", "⇣ contended"), ("integrity", "! integrity"),
         ("implausible", "‽ implausible"), ("not_comparable", "≠ not comparable (see reason)"),
         ("needs_rerun", "↻ needs rerun"), ("metric_mismatch", "≢ metric-mismatch"),
         ("non_causal", "→ non-causal"), ("over_budget", "+ over-budget"), ("unmeasured", "∅ unmeasured"))


# ---------------------------------------------------------------------------
# Formatting

def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "—"


def fmt(value: object, key: str = "") -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float) and key == "val_bpb":
        return f"{value:.6f}"
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:,.1f}"
    return sanitize(str(value))


def short_path(path: str, base: Path) -> str:
    """`path` relative to `base` when inside it (shorter, and the same on every machine)."""
    if not path:
        return "—"
    try:
        return str(Path(path).relative_to(base))
    except ValueError:
        return sanitize(path)


def tab_label(key: str, label: str) -> Content:
    """The tab's name with its key underlined (the key switches to the tab)."""
    at = label.lower().find(key)
    return Content.assemble(label[:at], (label[at], "underline"), label[at + 1:])


def title_text(exp: Experiment) -> Text:
    parts = [f"#{exp.id}", exp.agent or "—", labelled(verdict_of(exp))]
    if exp.val_bpb is not None:
        parts.append(f"val_bpb {exp.val_bpb:.6f}")
    if exp.is_live and exp.progress_pct is not None:
        parts.append(f"{exp.progress_pct:.0f}%")
    parts.append(" ".join(sanitize(exp.description).split()) or "(no description)")
    return Text(" · ".join(sanitize(p) for p in parts), no_wrap=True, overflow="ellipsis")


def metrics_of(exp: Experiment) -> dict[str, object]:
    """Every summary key (fork extras included) in the log's order, else the summary columns."""
    summary = exp.summary
    if summary:
        return summary
    return {k: getattr(exp, k) for k in (*SUMMARY_COLUMNS, "device") if getattr(exp, k) not in (None, "")}


# ---------------------------------------------------------------------------
# The screen

class DetailScreen(Screen):
    """Everything about one experiment, in tabs; Esc goes back."""

    COMPONENT_CLASSES = {"detail--key", "detail--heading"}
    AUTO_FOCUS = "#overview-body"
    BINDINGS = [
        Binding("escape,q", "back", "Back", id="detail.back", tooltip="Back to the previous screen"),
        *(Binding(key, f"show_tab('{tab}')", f"{label} tab", show=False, id=f"detail.{tab}")
          for key, tab, label in TABS),
        *(Binding(key, f"act('{action}')", label, id=f"detail.{action}") for key, action, label in ACTIONS),
    ]

    class _Loaded(Message):
        def __init__(self, data: DetailData) -> None:
            super().__init__()
            self.data = data

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, DetailScreen._Loaded)

    class _Unavailable(Message):
        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    class _Diffs(Message):
        def __init__(self, parent: DiffResult, main: DiffResult) -> None:
            super().__init__()
            self.parent = parent
            self.main = main

    def __init__(self, ledger_path: Path, exp_id: int, read_only: bool = False) -> None:
        super().__init__()
        self.ledger_path = Path(ledger_path)
        self.exp_id = exp_id
        self.read_only = read_only
        self.data: DetailData | None = None
        self.curve: LossCurve | None = None
        self._log_mounted = False

    def compose(self) -> ComposeResult:
        yield Static(Text(f"#{self.exp_id} · loading…"), id="detail-title")
        with TabbedContent(initial="overview", id="detail-tabs"):
            with TabPane(tab_label("o", "Overview"), id="overview"):
                with VerticalScroll(id="overview-body", can_focus=True):
                    with Horizontal(id="badges"):
                        yield Static(id="badge-state", classes="badge")
                        yield Static(id="badge-flags", classes="badge flags")
                    yield Static(id="ov-description")
                    yield Static(id="ov-result")
                    yield Static(id="ov-metrics")
                    yield Static(id="ov-run")
                    yield Static(id="ov-notes")
                    yield Static(id="ov-crash-tail")
            with TabPane(tab_label("c", "Curve"), id="curve"):
                yield Container(id="curve-slot")  # the LossCurve comes after the first paint
            with TabPane(tab_label("p", "vs parent"), id="diff-parent"):
                yield DiffView(id="diff-parent-view")
            with TabPane(tab_label("m", "vs main"), id="diff-main"):
                yield DiffView(id="diff-main-view")
            with TabPane(tab_label("l", "Log"), id="log"):
                yield Static("loading…", id="log-message")
            with TabPane(tab_label("e", "Events"), id="events"):
                yield MetricsTable(id="events-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self._watch_ledger()
        self.call_after_refresh(self._mount_curve)

    async def _mount_curve(self) -> None:
        from app.tui.widgets.loss_curve import LossCurve  # plotext: slow to import, not needed first

        self.curve = LossCurve(id="loss-curve")
        await self.query_one("#curve-slot").mount(self.curve)
        if self.data is not None:
            self._show_curve(self.data)

    def _show_curve(self, data: DetailData) -> None:
        if self.curve is None:
            return
        exp, ref = data.experiment, data.reference
        self.curve.set_curves(data.curve, data.reference_curve or None,
                              labels=(f"#{exp.id}", f"best #{ref.id}" if ref else "best"))

    # --- actions -------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """The experiment's actions only where they apply, and none that write when read-only."""
        if action != "act":
            return True
        exp = self.data.experiment if self.data else None
        return str(parameters[0]) in actions_for(exp, read_only=self.read_only)

    def action_act(self, action: str) -> None:
        self.app.run_flow(action, self.exp_id)  # type: ignore[attr-defined]

    def action_show_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        self._focus_pane(tab)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id:
            self._focus_pane(event.pane.id)

    def _focus_pane(self, tab: str) -> None:
        """Keys go to the tab's content (scrolling, search) rather than to the tab bar."""
        focusable = [w for w in self.query_one(f"#{tab}", TabPane).query("*") if w.focusable]
        if focusable:
            focusable[0].focus()

    # --- workers -------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="detail-ledger", exit_on_error=False)
    def _watch_ledger(self) -> None:
        """Reload whenever another connection commits (PRAGMA data_version), until cancelled."""
        worker = get_current_worker()
        interval = getattr(self.app, "poll_interval", 0.1) or 0.1
        cache: dict[tuple, list[Point]] = {}
        ledger: Ledger | None = None
        version = None
        try:
            while not worker.is_cancelled:
                try:
                    if ledger is None:
                        ledger = Ledger(self.ledger_path, read_only=self.read_only, create=False)
                    current = ledger.data_version()
                    if current != version:
                        self.post_message(self._Loaded(load_detail(ledger, self.exp_id, cache)))
                        version = current
                except LEDGER_ERRORS as exc:
                    self.post_message(self._Unavailable(str(exc)))
                    if ledger is not None:
                        ledger.close()
                    ledger, version = None, None
                    time.sleep(max(interval, 0.5))
                time.sleep(interval)
        finally:
            if ledger is not None:
                ledger.close()

    @work(thread=True, exclusive=True, group="detail-git", exit_on_error=False)
    def _load_diffs(self, exp: Experiment) -> None:
        repo = find_repo([exp.worktree, self.ledger_path.parent.parent])
        short = (exp.commit_sha or "?")[:7]
        parent = train_py_diff(repo, exp.parent_sha, exp.commit_sha,
                               f"train.py: parent {(exp.parent_sha or '?')[:7]} → #{exp.id} {short}")
        try:
            main_head = git.head_sha(repo, short=True) if repo else "?"
        except git.GitError:
            main_head = "?"
        main = train_py_diff(repo, "HEAD" if repo else "", exp.commit_sha,
                             f"train.py: main (HEAD {main_head}) → #{exp.id} {short}")
        if not get_current_worker().is_cancelled:
            self.post_message(self._Diffs(parent, main))

    # --- handlers ------------------------------------------------------------------------------

    @on(_Unavailable)
    def _unavailable(self, message: _Unavailable) -> None:
        self.query_one("#detail-title", Static).update(
            Text(f"#{self.exp_id}: {sanitize(message.reason)}"))

    @on(_Diffs)
    def _diffs(self, message: _Diffs) -> None:
        self.query_one("#diff-parent-view", DiffView).set_diff(message.parent)
        self.query_one("#diff-main-view", DiffView).set_diff(message.main)

    @on(_Loaded)
    async def _loaded(self, message: _Loaded) -> None:
        first = self.data is None
        self.data = data = message.data
        exp = data.experiment
        self.refresh_bindings()
        self.query_one("#detail-title", Static).update(title_text(exp))
        self._show_overview(data)
        self._show_events(data.events)
        self._show_curve(data)
        if first:
            self._load_diffs(exp)
        await self._show_log(exp, data.log_file)

    async def _show_log(self, exp: Experiment, path: Path | None) -> None:
        crashed = exp.decision in CRASHED
        if self._log_mounted:
            viewer = self.query_one(LogViewer)
            viewer.view.live = exp.is_live
            if viewer.view.crashed != crashed:
                viewer.view.crashed = crashed
                viewer.view.refresh()
            return
        message = self.query_one("#log-message", Static)
        if not exp.log_path:
            message.update(Text("No log recorded for this experiment (it may not have started)."))
            return
        if path is None:
            shown = sanitize(exp.log_path)
            message.update(Text(
                f"Waiting for the log at {shown}: the run has not written it yet." if exp.is_live
                else f"The log file {shown} does not exist: it was moved or deleted, or the run "
                     "never wrote one."))
            return
        self._log_mounted = True
        await message.remove()
        viewer = LogViewer(path, live=exp.is_live, crashed=crashed)
        await self.query_one("#log", TabPane).mount(viewer)
        if self.query_one(TabbedContent).active == "log":
            viewer.view.focus()

    def _kv(self, rows: Sequence[tuple[str, object]], heading: str) -> Content:
        key_style = Style.from_styles(self.get_component_styles("detail--key"))
        head_style = Style.from_styles(self.get_component_styles("detail--heading"))
        width = max((len(k) for k, _ in rows), default=0) + 2
        lines = [Content.styled(heading, head_style)]
        for key, value in rows:
            text = value if isinstance(value, str) else fmt(value, key)
            lines.append(Content.assemble((key.ljust(width), key_style), text))
        return Content("\n").join(lines)

    def _show_overview(self, data: DetailData) -> None:
        exp = data.experiment
        base = self.ledger_path.parent
        if base.name == ".autoresearch":  # the default place: show paths from the main worktree
            base = base.parent
        state = verdict_of(exp)
        badge = self.query_one("#badge-state", Static)
        badge.update(Text(labelled(state)))
        badge.set_classes(f"badge state-{state}")
        flags = [label for column, label in FLAGS if getattr(exp, column)]
        if exp.repeat_of:
            flags.append(f"↻ repeat of #{exp.repeat_of}")
        if exp.adopted_sha:
            flags.append(f"★ adopted {exp.adopted_sha[:7]}")
        self.query_one("#badge-flags", Static).update(Text("  ".join(flags) or "no flags"))
        self.query_one("#ov-description", Static).update(self._kv([
            ("description", sanitize(exp.description) or "—"),
            ("hypothesis", sanitize(exp.hypothesis) or "—"),
            ("category", sanitize(exp.category) or "—")], "What"))
        result: list[tuple[str, object]] = [
            ("decision", exp.decision), ("review", exp.review), ("status", exp.status),
            ("val_bpb", exp.val_bpb), ("delta", f"{exp.delta:+.6f}" if exp.delta is not None else None),
            ("margin", exp.margin), ("reason", sanitize(exp.reason)), ("exit code", exp.exit_code)]
        if exp.is_live:
            result += [("progress", f"{exp.progress_pct:.1f}%" if exp.progress_pct is not None else None),
                       ("last loss", exp.last_loss), ("remaining", f"{exp.remaining_s:.0f}s"
                                                      if exp.remaining_s is not None else None)]
        always = ("decision", "status", "val_bpb")
        result = [(k, v) for k, v in result if k in always or v not in (None, "")]
        self.query_one("#ov-result", Static).update(self._kv(result, "Result"))
        metrics = list(metrics_of(exp).items())
        self.query_one("#ov-metrics", Static).update(
            self._kv(metrics, "Metrics") if metrics else self._kv([], "Metrics: none recorded yet"))
        duration = (exp.finished_at - exp.started_at) if exp.finished_at and exp.started_at else None
        self.query_one("#ov-run", Static).update(self._kv([
            ("tag", exp.tag), ("agent", exp.agent), ("branch", exp.branch), ("backend", exp.backend),
            ("device", exp.device), ("worktree", short_path(exp.worktree, base)),
            ("parent", exp.parent_sha[:10] or None), ("commit", exp.commit_sha[:10] or None),
            ("adopted as", exp.adopted_sha[:10] or None), ("created", when(exp.created_at)),
            ("started", when(exp.started_at)), ("finished", when(exp.finished_at)),
            ("duration", f"{duration:.0f}s" if duration is not None else None),
            ("log", short_path(exp.log_path, base))], "Run"))
        notes = [(f"{when(n.at)} {sanitize(n.author) or '?'}", " ".join(sanitize(n.text).split()))
                 for n in data.notes]
        self.query_one("#ov-notes", Static).update(
            self._kv(notes, "Notes") if notes else self._kv([], "Notes: none"))
        tail = self.query_one("#ov-crash-tail", Static)
        tail.display = bool(exp.crash_tail)
        if exp.crash_tail:
            tail.update(Content("Crash tail (last log lines)\n") + Content(sanitize(exp.crash_tail)))

    def _show_events(self, events: list[Event]) -> None:
        table = self.query_one("#events-table", MetricsTable)
        if table.row_count == len(events) and table.columns:
            return
        rows = []
        for event in events:
            detail = ", ".join(f"{k}={v}" for k, v in event.detail.items())
            rows.append([Text(when(event.at)), Text(sanitize(event.kind)), Text(sanitize(event.actor)),
                         Text(sanitize(event.agent)), Text(" ".join(sanitize(detail).split())[:200])])
        table.set_rows(("when", "event", "by", "agent", "detail"), rows)
