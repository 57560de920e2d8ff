"""The dashboard's view of the ledger: windowed queries and the `PRAGMA data_version` poll.

`LedgerPoller.poll()` costs one PRAGMA while nothing changes. When another process commits, a
cheap signature (newest event, experiment, note, agent update) tells a structural change (a new
experiment, a decision, a verdict: full reload of the table window, agents and plot) from the
runner's once-a-second live columns (only the live rows and the followed curve are re-read).
Nothing here loads all experiments: the table gets a window of `limit` rows, the plot a thinned
series. `run()` is the loop a thread worker calls; it posts `LedgerChanged` / `LedgerUnavailable`.
Attention (what needs a human, and whether the supervisor is alive) is re-read with every change
and every ATTENTION_S even when nothing changes: a dead supervisor writes nothing.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from app.config import Settings
from app.ledger.dashboard import (
    TableFilter,
    best_per_tag,
    change_signature,
    experiment_agents,
    experiment_count,
    last_finished,
    live_rows,
    registered_agents,
    steps_after,
    table_row,
    table_window,
    tag_runs,
    tags_newest_first,
)
from app.ledger.pool import PoolView, load_pool
from app.ledger.records import Experiment
from app.ledger.store import LEDGER_ERRORS, Ledger
from app.ledger.supervisor import SupervisorRow, read_supervisor
from app.ledger.tags import latest_finished_tag
from app.ledger.vocabulary import is_kept, state_of
from app.supervisor.attention import AttentionItem
from app.supervisor.status import current_attention
from app.tui.messages import LedgerChanged, LedgerUnavailable

WINDOW_ROWS = 500  # rows the table holds; the status line says how many more match
MAX_PLOT_POINTS = 3000  # plot points kept per tag (every kept run, the others thinned)
FULL_RELOAD_S = 5.0  # while the ledger keeps changing, reload everything at least this often
RETRY_S = 0.5  # wait between attempts to open a missing or broken ledger
ATTENTION_S = 2.0  # attention and the supervisor's liveness are re-read at least this often


@dataclass(frozen=True)
class DashboardQuery:
    """What the dashboard shows; the UI swaps in a new one, the poller reloads."""

    tag: str | None = None  # table filter (the plot and header follow it); None: every tag
    plot_tag: str | None = None  # the tag the plot and header show (`T`); None: `tag`, else the
    # tag whose run finished last when the dashboard first loaded
    agent: str | None = None
    state: str | None = None  # one of STATES
    search: str = ""  # substring of description, hypothesis or agent
    sort: str = "newest"
    limit: int = WINDOW_ROWS
    follow_id: int | None = None  # the live view's experiment: its loss curve is loaded


@dataclass(frozen=True)
class AgentStatus:
    name: str
    branch: str
    state: str
    running: Experiment | None  # its live experiment, if any
    last: Experiment | None  # its newest finished experiment
    worktree: str = ""  # "" for an agent known only from its experiments
    pane_id: str = ""  # its tmux pane while it runs
    tmux_socket: str = ""  # the tmux server (-L name) of that pane; "" is the default server


@dataclass(frozen=True)
class Progression:
    """Upstream's progress.png for one tag: every measured run, and the running best of kept runs."""

    tag: str
    points: tuple[tuple[int, float, str], ...]  # (experiment id, val_bpb, state)
    best_steps: tuple[tuple[int, float], ...]  # (experiment id, best val_bpb so far)
    total: int  # experiments in the tag (crashes included)
    first_id: int = 0  # the tag's first and last experiment ids (the x axis)
    last_id: int = 0


@dataclass(frozen=True)
class FollowData:
    """The live view's experiment with its loss curve and the tag best's curve to compare."""

    experiment: Experiment
    curve: tuple[tuple[float, float], ...]  # (progress %, loss)
    best: Experiment | None
    best_curve: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class DashboardData:
    query: DashboardQuery
    rows: tuple[Experiment, ...]  # the table window, in display order
    total: int  # experiments matching the filters (the window may hold fewer)
    experiment_count: int  # experiments in the ledger
    best: dict[str, Experiment] = field(default_factory=dict)  # best kept run per tag
    tags: tuple[str, ...] = ()  # newest first
    agent_names: tuple[str, ...] = ()
    agents: tuple[AgentStatus, ...] = ()
    live: tuple[Experiment, ...] = ()
    progression: Progression | None = None
    follow: FollowData | None = None
    attention: tuple[AttentionItem, ...] = ()  # what needs a human, most urgent first
    supervisor: SupervisorRow | None = None  # its heartbeat row (None: none ever ran)
    gpus: PoolView | None = None  # the GPU pool: devices, holders, queue, duty cycle


def load_progression(ledger: Ledger, tag: str) -> Progression:
    runs = tag_runs(ledger, tag)
    points: list[tuple[int, float, str]] = []
    best_steps: list[tuple[int, float]] = []
    for exp in runs:
        if exp.val_bpb is None:
            continue
        state = state_of(exp)
        points.append((exp.id, exp.val_bpb, state))
        if is_kept(exp) and (not best_steps or exp.val_bpb < best_steps[-1][1]):
            best_steps.append((exp.id, exp.val_bpb))
    if len(points) > MAX_PLOT_POINTS:
        others = [p for p in points if p[2] != "keep"]
        stride = max(1, len(others) * 2 // MAX_PLOT_POINTS)
        points = sorted([p for p in points if p[2] == "keep"] + others[::stride])
    first, last = (runs[0].id, runs[-1].id) if runs else (0, 0)
    if best_steps:
        best_steps.append((last, best_steps[-1][1]))
    return Progression(tag, tuple(points), tuple(best_steps), len(runs), first, last)


class LedgerPoller:
    """Owns one read connection (in the worker's thread) and the last data it produced."""

    def __init__(self, ledger_path: Path, *, read_only: bool = False, interval: float = 0.1,
                 query: DashboardQuery | None = None) -> None:
        self.ledger_path = Path(ledger_path)
        self.settings = Settings()  # attention's thresholds
        self.clock: Callable[[], float] = time.time  # "now" for attention
        self._attention_at = 0.0
        self.read_only = read_only
        self.interval = interval
        self._query = query or DashboardQuery()
        self._wake = threading.Event()
        self._ledger: Ledger | None = None
        self._version: int | None = None
        self._signature: tuple | None = None
        self._full_at = 0.0
        self._data: DashboardData | None = None
        self._progression_key: tuple | None = None
        self._curves: dict[int, tuple[int, list[tuple[float, float]]]] = {}
        self._default_tag: str | None = None  # chosen once: the plot never switches on its own

    @property
    def query(self) -> DashboardQuery:
        return self._query

    def configure(self, settings: Settings | None, clock: Callable[[], float]) -> None:
        """Before polling starts: the settings attention uses, and the display's "now"."""
        self.settings = settings or Settings()
        self.clock = clock

    def set_query(self, query: DashboardQuery) -> None:
        """Thread-safe: the next poll (woken now) reloads with this query."""
        self._query = query
        self._wake.set()

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    # -- the loop -------------------------------------------------------------------------------

    def run(self, is_cancelled: Callable[[], bool], post: Callable[[Any], Any]) -> None:
        """Poll until cancelled; post LedgerChanged on change, LedgerUnavailable on trouble."""
        try:
            while not is_cancelled():
                try:
                    data = self.poll()
                except LEDGER_ERRORS as exc:
                    self.close()
                    post(LedgerUnavailable(str(exc)))
                    self._wake.wait(RETRY_S)
                else:
                    if data is not None:
                        post(LedgerChanged(data))
                    self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            self.close()

    def poll(self) -> DashboardData | None:
        """One step: new data if the ledger or the query changed since the last call, else None."""
        if self._ledger is None:
            self._ledger = Ledger(self.ledger_path, read_only=self.read_only, create=False)
            self._version = None
        ledger = self._ledger
        query = self._query
        version = self._ledger.data_version()
        if self._data is not None and version == self._version and query == self._data.query:
            if time.monotonic() - self._attention_at < ATTENTION_S:
                return None
            shown = self._data
            self._data = self._with_attention(ledger, shown)
            return None if self._data == shown else self._data
        self._version = version
        signature = change_signature(ledger)
        previous = self._data
        structural = (previous is None or signature != self._signature
                      or replace(query, follow_id=None) != replace(previous.query, follow_id=None)
                      or time.monotonic() - self._full_at > FULL_RELOAD_S)
        self._signature = signature
        if structural:
            self._full_at = time.monotonic()
            data = self._load_full(ledger, query)
        else:
            assert previous is not None
            data = self._load_live(ledger, query, previous)
        self._data = self._with_attention(ledger, data)
        return self._data

    def _with_attention(self, ledger: Ledger, data: DashboardData) -> DashboardData:
        self._attention_at = time.monotonic()
        items = tuple(current_attention(ledger, self.settings, self.clock()))
        return replace(data, attention=items, supervisor=read_supervisor(ledger))

    # -- loading --------------------------------------------------------------------------------

    def _load_full(self, ledger: Ledger, query: DashboardQuery) -> DashboardData:
        table = TableFilter(tag=query.tag, agent=query.agent, state=query.state, search=query.search)
        rows, total = table_window(ledger, table, query.sort, query.limit)
        count = experiment_count(ledger)
        tags = tags_newest_first(ledger)
        best = best_per_tag(ledger)
        live = live_rows(ledger)
        agents = self._agents(ledger, live)
        if self._default_tag not in tags:
            self._default_tag = latest_finished_tag(ledger)
        plot_tag = next((t for t in (query.plot_tag, query.tag) if t is not None), self._default_tag)
        progression = None
        if plot_tag is not None:
            key = (plot_tag, self._signature)
            if key != self._progression_key or self._data is None or self._data.progression is None:
                self._progression_key = key
                progression = load_progression(ledger, plot_tag)
            else:
                progression = self._data.progression
        data = DashboardData(query=query, rows=tuple(rows), total=total, experiment_count=count,
                             best=best, tags=tags, agent_names=tuple(a.name for a in agents),
                             agents=agents, live=live, progression=progression,
                             gpus=load_pool(ledger))
        return replace(data, follow=self._follow(ledger, query, data))

    def _load_live(self, ledger: Ledger, query: DashboardQuery,
                   previous: DashboardData) -> DashboardData:
        """Only the runner's live columns moved: patch the live rows into the previous data."""
        live = live_rows(ledger)
        by_id = {exp.id: exp for exp in live}
        rows = tuple(by_id.get(exp.id, exp) for exp in previous.rows)
        agents = tuple(replace(a, running=by_id.get(a.running.id, a.running)) if a.running else a
                       for a in previous.agents)
        data = replace(previous, query=query, rows=rows, live=live, agents=agents,
                       gpus=load_pool(ledger))
        return replace(data, follow=self._follow(ledger, query, data))

    def _agents(self, ledger: Ledger, live: tuple[Experiment, ...]) -> tuple[AgentStatus, ...]:
        registered = {row.name: row for row in registered_agents(ledger)}
        names = set(registered) | experiment_agents(ledger)
        running = {exp.agent: exp for exp in live}  # newest live experiment per agent
        out = []
        for name in sorted(names):
            last = last_finished(ledger, name)
            now = running.get(name)
            row = registered.get(name)
            seen = now or last  # an agent known only from its experiments (e.g. imported)
            branch = (row.branch if row else "") or (seen.branch if seen else "")
            out.append(AgentStatus(name=name, branch=branch, running=now, last=last,
                                   state=(row and row.state) or ("running" if now else "—"),
                                   worktree=(row and row.worktree) or "",
                                   pane_id=(row and row.pane_id) or "",
                                   tmux_socket=(row and row.tmux_socket) or ""))
        return tuple(out)

    def _follow(self, ledger: Ledger, query: DashboardQuery,
                data: DashboardData) -> FollowData | None:
        if query.follow_id is None:
            return None
        found = [e for e in data.live + data.rows if e.id == query.follow_id]
        exp = found[0] if found else table_row(ledger, query.follow_id)
        if exp is None:
            return None
        best = data.best.get(exp.tag)
        best = best if best is not None and best.id != exp.id else None
        self._curves = {k: v for k, v in self._curves.items() if k in (exp.id, best and best.id)}
        return FollowData(exp, self._curve(ledger, exp.id), best,
                          self._curve(ledger, best.id) if best else ())

    def _curve(self, ledger: Ledger, exp_id: int) -> tuple[tuple[float, float], ...]:
        """(progress %, loss) of an experiment's sampled steps, read incrementally."""
        last_step, points = self._curves.get(exp_id, (-1, []))
        for step, pct, loss in steps_after(ledger, exp_id, last_step):
            last_step = step
            if pct is not None and loss is not None:
                points.append((pct, loss))
        self._curves[exp_id] = (last_step, points)
        return tuple(points)
