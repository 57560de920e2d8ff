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

import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from app.config import Settings
from app.ledger.records import Experiment
from app.ledger.supervisor import SupervisorRow, read_supervisor
from app.supervisor.attention import AttentionItem
from app.supervisor.status import current_attention
from app.tui.messages import LedgerChanged, LedgerUnavailable

if TYPE_CHECKING:
    from app.ledger.store import Ledger

TABLE_COLUMNS = (
    "id", "tag", "agent", "branch", "status", "decision", "review", "reason", "val_bpb",
    "description", "hypothesis", "near_miss", "contended", "integrity", "needs_rerun",
    "adopted_sha", "progress_pct", "remaining_s", "last_loss", "log_path", "commit_sha",
    "parent_sha", "created_at", "started_at", "finished_at", "heartbeat_at", "kill_requested_at",
)
SORTS = {  # sort name -> ORDER BY; `s` cycles through them in this order
    "newest": "id DESC",
    "val_bpb": "val_bpb IS NULL, val_bpb, id DESC",
    "agent": "agent, id DESC",
    "decision": "COALESCE(review, decision, status), id DESC",
}
STATES = ("running", "pending", "keep", "discard", "crash", "killed", "timeout", "lost")
WINDOW_ROWS = 500  # rows the table holds; the status line says how many more match
MAX_PLOT_POINTS = 3000  # plot points kept per tag (every kept run, the others thinned)
FULL_RELOAD_S = 5.0  # while the ledger keeps changing, reload everything at least this often
RETRY_S = 0.5  # wait between attempts to open a missing or broken ledger
ATTENTION_S = 2.0  # attention and the supervisor's liveness are re-read at least this often

_STATE_SQL = {
    "running": ("status IN ('registered', 'running')", ()),
    "pending": ("review = 'pending'", ()),
}


def state_of(exp: Experiment) -> str:
    """What a human sees for an experiment: pending review first, then the decision or status."""
    if exp.review == "pending":
        return "pending"
    return exp.decision or exp.status


@dataclass(frozen=True)
class DashboardQuery:
    """What the dashboard shows; the UI swaps in a new one, the poller reloads."""

    tag: str | None = None  # table filter and plot tag; None: every tag (plot: the live/newest)
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
    points: tuple[tuple[int, float, str], ...]  # (experiment number in the tag, val_bpb, state)
    best_steps: tuple[tuple[int, float], ...]  # (experiment number, best val_bpb so far)
    total: int  # experiments in the tag (crashes included)


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


def _select(conn: sqlite3.Connection, where: str, args: tuple | list, order: str = "id",
            limit: int | None = None) -> list[Experiment]:
    sql = f"SELECT {', '.join(TABLE_COLUMNS)} FROM experiments WHERE {where} ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [Experiment(**dict(zip(TABLE_COLUMNS, row))) for row in conn.execute(sql, args)]


def _filters(query: DashboardQuery) -> tuple[str, list[Any]]:
    where, args = ["1"], []
    for column, value in (("tag", query.tag), ("agent", query.agent)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if query.state in _STATE_SQL:
        where.append(_STATE_SQL[query.state][0])
    elif query.state:
        where.append("decision = ? AND (review IS NULL OR review != 'pending')")
        args.append(query.state)
    if query.search:
        pattern = "%" + query.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(description LIKE ? ESCAPE '\\' OR hypothesis LIKE ? ESCAPE '\\' "
                     "OR agent LIKE ? ESCAPE '\\')")
        args += [pattern] * 3
    return " AND ".join(where), args


def load_progression(conn: sqlite3.Connection, tag: str) -> Progression:
    rows = conn.execute("SELECT val_bpb, decision, review, status, integrity FROM experiments "
                        "WHERE tag = ? ORDER BY id", (tag,)).fetchall()
    points: list[tuple[int, float, str]] = []
    best_steps: list[tuple[int, float]] = []
    for number, (val_bpb, decision, review, status, integrity) in enumerate(rows, start=1):
        if val_bpb is None:
            continue
        state = "pending" if review == "pending" else decision or status
        points.append((number, val_bpb, state))
        if state == "keep" and not integrity and (not best_steps or val_bpb < best_steps[-1][1]):
            best_steps.append((number, val_bpb))
    if len(points) > MAX_PLOT_POINTS:
        others = [p for p in points if p[2] != "keep"]
        stride = max(1, len(others) * 2 // MAX_PLOT_POINTS)
        points = sorted([p for p in points if p[2] == "keep"] + others[::stride])
    if best_steps:
        best_steps.append((len(rows), best_steps[-1][1]))
    return Progression(tag, tuple(points), tuple(best_steps), len(rows))


class LedgerPoller:
    """Owns one read connection (in the worker's thread) and the last data it produced."""

    def __init__(self, ledger_path: Path, *, read_only: bool = False, interval: float = 0.1,
                 query: DashboardQuery | None = None, settings: Settings | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger_path = Path(ledger_path)
        self.settings = settings or Settings()
        self.clock = clock
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

    @property
    def query(self) -> DashboardQuery:
        return self._query

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
        from app.ledger.store import LedgerError  # sqlite_utils (+numpy): imported here, off the UI thread

        try:
            while not is_cancelled():
                try:
                    data = self.poll()
                except (LedgerError, sqlite3.Error) as exc:
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
            from app.ledger.store import Ledger

            self._ledger = Ledger(self.ledger_path, read_only=self.read_only, create=False)
            self._version = None
        conn = self._ledger.conn
        query = self._query
        version = self._ledger.data_version()
        if self._data is not None and version == self._version and query == self._data.query:
            if time.monotonic() - self._attention_at < ATTENTION_S:
                return None
            previous = self._data
            self._data = self._with_attention(conn, previous)
            return None if self._data == previous else self._data
        self._version = version
        signature = tuple(conn.execute(
            "SELECT (SELECT MAX(id) FROM events), (SELECT MAX(id) FROM experiments), "
            "(SELECT MAX(id) FROM notes), (SELECT COUNT(*) FROM agents), "
            "(SELECT MAX(updated_at) FROM agents)").fetchone())
        previous = self._data
        structural = (previous is None or signature != self._signature
                      or replace(query, follow_id=None) != replace(previous.query, follow_id=None)
                      or time.monotonic() - self._full_at > FULL_RELOAD_S)
        self._signature = signature
        if structural:
            self._full_at = time.monotonic()
            self._data = self._load_full(conn, query)
        else:
            assert previous is not None
            self._data = self._load_live(conn, query, previous)
        self._data = self._with_attention(conn, self._data)
        return self._data

    def _with_attention(self, conn: sqlite3.Connection, data: DashboardData) -> DashboardData:
        self._attention_at = time.monotonic()
        items = tuple(current_attention(conn, self.settings, self.clock()))
        return replace(data, attention=items, supervisor=read_supervisor(conn))

    # -- loading --------------------------------------------------------------------------------

    def _load_full(self, conn: sqlite3.Connection, query: DashboardQuery) -> DashboardData:
        where, args = _filters(query)
        rows = _select(conn, where, args, SORTS.get(query.sort, SORTS["newest"]), query.limit)
        total = len(rows) if len(rows) < query.limit else conn.execute(
            f"SELECT COUNT(*) FROM experiments WHERE {where}", args).fetchone()[0]
        count = conn.execute("SELECT COUNT(*) FROM experiments").fetchone()[0]
        tags = tuple(t for (t,) in conn.execute(
            "SELECT tag FROM experiments GROUP BY tag ORDER BY MAX(id) DESC"))
        best = {exp.tag: exp for exp in _select(conn, "id IN (SELECT id FROM (SELECT id, "
                "MIN(val_bpb) FROM experiments WHERE decision = 'keep' AND val_bpb IS NOT NULL "
                "AND integrity = 0 GROUP BY tag))", ())}
        live = tuple(_select(conn, "status IN ('registered', 'running')", ()))
        agents = self._agents(conn, live)
        plot_tag = query.tag if query.tag is not None else (
            live[-1].tag if live else tags[0] if tags else None)
        progression = None
        if plot_tag is not None:
            key = (plot_tag, self._signature)
            if key != self._progression_key or self._data is None or self._data.progression is None:
                self._progression_key = key
                progression = load_progression(conn, plot_tag)
            else:
                progression = self._data.progression
        data = DashboardData(query=query, rows=tuple(rows), total=total, experiment_count=count,
                             best=best, tags=tags, agent_names=tuple(a.name for a in agents),
                             agents=agents, live=live, progression=progression)
        return replace(data, follow=self._follow(conn, query, data))

    def _load_live(self, conn: sqlite3.Connection, query: DashboardQuery,
                   previous: DashboardData) -> DashboardData:
        """Only the runner's live columns moved: patch the live rows into the previous data."""
        live = tuple(_select(conn, "status IN ('registered', 'running')", ()))
        by_id = {exp.id: exp for exp in live}
        rows = tuple(by_id.get(exp.id, exp) for exp in previous.rows)
        agents = tuple(replace(a, running=by_id.get(a.running.id, a.running)) if a.running else a
                       for a in previous.agents)
        data = replace(previous, query=query, rows=rows, live=live, agents=agents)
        return replace(data, follow=self._follow(conn, query, data))

    def _agents(self, conn: sqlite3.Connection, live: tuple[Experiment, ...]) -> tuple[AgentStatus, ...]:
        registered = {row[0]: row[1:] for row in conn.execute(
            "SELECT name, branch, state, worktree, pane_id, tmux_socket FROM agents")}
        names = set(registered) | {a for (a,) in conn.execute(
            "SELECT DISTINCT agent FROM experiments WHERE agent != ''")}
        running = {exp.agent: exp for exp in live}  # newest live experiment per agent
        out = []
        for name in sorted(names):
            finished = _select(conn, "agent = ? AND status = 'finished'", (name,), "id DESC", 1)
            last = finished[0] if finished else None
            now = running.get(name)
            branch, state, worktree, pane_id, socket = registered.get(name, ("",) * 5)
            if not branch:  # an agent known only from its experiments (e.g. imported)
                branch = (now or last).branch if (now or last) else ""
            out.append(AgentStatus(name=name, branch=branch, running=now, last=last,
                                   state=state or ("running" if now else "—"), worktree=worktree or "",
                                   pane_id=pane_id or "", tmux_socket=socket or ""))
        return tuple(out)

    def _follow(self, conn: sqlite3.Connection, query: DashboardQuery,
                data: DashboardData) -> FollowData | None:
        if query.follow_id is None:
            return None
        found = [e for e in data.live + data.rows if e.id == query.follow_id]
        exp = found[0] if found else next(iter(_select(conn, "id = ?", (query.follow_id,))), None)
        if exp is None:
            return None
        best = data.best.get(exp.tag)
        best = best if best is not None and best.id != exp.id else None
        self._curves = {k: v for k, v in self._curves.items() if k in (exp.id, best and best.id)}
        return FollowData(exp, self._curve(conn, exp.id), best,
                          self._curve(conn, best.id) if best else ())

    def _curve(self, conn: sqlite3.Connection, exp_id: int) -> tuple[tuple[float, float], ...]:
        """(progress %, loss) of an experiment's sampled steps, read incrementally."""
        last_step, points = self._curves.get(exp_id, (-1, []))
        for step, pct, loss in conn.execute(
                "SELECT step, progress_pct, loss FROM steps WHERE experiment_id = ? AND step > ? "
                "ORDER BY step", (exp_id, last_step)):
            last_step = step
            if pct is not None and loss is not None:
                points.append((pct, loss))
        self._curves[exp_id] = (last_step, points)
        return tuple(points)
