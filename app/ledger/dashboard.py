"""The dashboard's queries: a filtered, sorted window of the table, the bests, live rows, agents.

Cheap by construction: the table reads `limit` rows of the columns it shows (TABLE_COLUMNS), the
change signature is one statement, curves are read incrementally (`steps_after`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.ledger.records import Experiment
from app.ledger.store import Ledger
from app.ledger.vocabulary import KEPT_SQL, LIVE_SQL

TABLE_COLUMNS = (
    "id", "tag", "agent", "branch", "status", "decision", "review", "reason", "val_bpb",
    "description", "hypothesis", "near_miss", "contended", "integrity", "implausible",
    "needs_rerun", "adopted_sha", "progress_pct", "remaining_s", "last_loss", "log_path", "commit_sha",
    "parent_sha", "created_at", "started_at", "finished_at", "heartbeat_at", "kill_requested_at",
)
SORTS = {  # sort name -> ORDER BY; `s` cycles through them in this order
    "newest": "id DESC",
    "val_bpb": "val_bpb IS NULL, val_bpb, id DESC",
    "agent": "agent, id DESC",
    "decision": "COALESCE(review, decision, status), id DESC",
}
_STATE_SQL = {
    "running": LIVE_SQL,
    "pending": "review = 'pending'",
}


@dataclass(frozen=True)
class TableFilter:
    """Which experiments the table shows: equal tag/agent, a state, a text search."""

    tag: str | None = None
    agent: str | None = None
    state: str | None = None
    search: str = ""  # substring of description, hypothesis or agent


@dataclass(frozen=True)
class AgentRow:
    """An agents-table row, as the dashboard needs it."""

    name: str
    branch: str
    state: str
    worktree: str
    pane_id: str
    tmux_socket: str


def _select(ledger: Ledger, where: str, args: tuple | list, order: str = "id",
            limit: int | None = None) -> list[Experiment]:
    sql = f"SELECT {', '.join(TABLE_COLUMNS)} FROM experiments WHERE {where} ORDER BY {order}"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    rows = ledger.conn.execute(sql, args)
    return [Experiment(**dict(zip(TABLE_COLUMNS, row, strict=True))) for row in rows]


def _where(table: TableFilter) -> tuple[str, list[Any]]:
    where, args = ["1"], []
    for column, value in (("tag", table.tag), ("agent", table.agent)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if table.state in _STATE_SQL:
        where.append(_STATE_SQL[table.state])
    elif table.state:
        where.append("decision = ? AND (review IS NULL OR review != 'pending')")
        args.append(table.state)
    if table.search:
        pattern = "%" + table.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append("(description LIKE ? ESCAPE '\\' OR hypothesis LIKE ? ESCAPE '\\' "
                     "OR agent LIKE ? ESCAPE '\\')")
        args += [pattern] * 3
    return " AND ".join(where), args


def table_window(ledger: Ledger, table: TableFilter, sort: str, limit: int) -> tuple[list[Experiment], int]:
    """The first `limit` matching rows in `sort` order, and how many match in all."""
    where, args = _where(table)
    rows = _select(ledger, where, args, SORTS.get(sort, SORTS["newest"]), limit)
    if len(rows) < limit:
        return rows, len(rows)
    return rows, ledger.conn.execute(f"SELECT COUNT(*) FROM experiments WHERE {where}",
                                     args).fetchone()[0]


def change_signature(ledger: Ledger) -> tuple:
    """Newest event, experiment and note, agent count and newest agent update: what changes
    when anything but the runner's live columns changes."""
    return tuple(ledger.conn.execute(
        "SELECT (SELECT MAX(id) FROM events), (SELECT MAX(id) FROM experiments), "
        "(SELECT MAX(id) FROM notes), (SELECT COUNT(*) FROM agents), "
        "(SELECT MAX(updated_at) FROM agents)").fetchone())


def experiment_count(ledger: Ledger) -> int:
    return int(ledger.conn.execute("SELECT COUNT(*) FROM experiments").fetchone()[0])


def tags_newest_first(ledger: Ledger) -> tuple[str, ...]:
    return tuple(t for (t,) in ledger.conn.execute(
        "SELECT tag FROM experiments GROUP BY tag ORDER BY MAX(id) DESC"))


def best_per_tag(ledger: Ledger) -> dict[str, Experiment]:
    """The best kept run of every tag (table columns only)."""
    return {exp.tag: exp for exp in _select(
        ledger, "id IN (SELECT id FROM (SELECT id, MIN(val_bpb) FROM experiments "
        f"WHERE {KEPT_SQL} GROUP BY tag))", ())}


def live_rows(ledger: Ledger) -> tuple[Experiment, ...]:
    """Registered and running experiments (table columns only), oldest first."""
    return tuple(_select(ledger, LIVE_SQL, ()))


def table_row(ledger: Ledger, exp_id: int) -> Experiment | None:
    return next(iter(_select(ledger, "id = ?", (exp_id,))), None)


def last_finished(ledger: Ledger, agent: str) -> Experiment | None:
    """The agent's newest finished experiment (table columns only)."""
    found = _select(ledger, "agent = ? AND status = 'finished'", (agent,), "id DESC", 1)
    return found[0] if found else None


def registered_agents(ledger: Ledger) -> list[AgentRow]:
    return [AgentRow(*row) for row in ledger.conn.execute(
        "SELECT name, branch, state, worktree, pane_id, tmux_socket FROM agents")]


def experiment_agents(ledger: Ledger) -> set[str]:
    """Every agent name that experiments carry (imported ones included)."""
    return {a for (a,) in ledger.conn.execute(
        "SELECT DISTINCT agent FROM experiments WHERE agent != ''")}


def tag_runs(ledger: Ledger, tag: str) -> list[Experiment]:
    """Every experiment of `tag` in id order, with what the progression plot needs."""
    rows = ledger.conn.execute("SELECT id, val_bpb, decision, review, status, integrity "
                               "FROM experiments WHERE tag = ? ORDER BY id", (tag,))
    return [Experiment(id=i, tag=tag, val_bpb=v, decision=d, review=r, status=s, integrity=g)
            for i, v, d, r, s, g in rows]


def steps_after(ledger: Ledger, exp_id: int, after_step: int) -> list[tuple[int, float | None, float | None]]:
    """(step, progress %, loss) of an experiment's sampled steps past `after_step`, in order."""
    rows = ledger.conn.execute("SELECT step, progress_pct, loss FROM steps "
                               "WHERE experiment_id = ? AND step > ? ORDER BY step",
                               (exp_id, after_step))
    return [(int(step), pct, loss) for step, pct, loss in rows]
