"""The supervisor's queries: its heartbeat row, and what attention is computed from.

The supervisor, the TUI's poller and `cockpit attention` all read through these, so they see the
same thing.
"""
from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field, fields
from typing import Any

from app.ledger.records import LIVE_STATUSES, Experiment
from app.ledger.store import Ledger

SUPERVISOR_ROW = 1  # the table holds one row per ledger
_KEPT = "{t}.decision = 'keep' AND {t}.val_bpb IS NOT NULL AND {t}.integrity = 0"


@dataclass(frozen=True)
class SupervisorRow:
    pid: int | None = None
    pid_start: float | None = None
    host: str = ""
    state: str = "stopped"  # running | stopped | error
    message: str = ""  # why it stopped or what troubles it, one line
    started_at: float | None = None
    heartbeat_at: float | None = None
    waiting: dict[str, dict[str, Any]] = field(default_factory=dict)  # agent -> {since, prompt}
    notified: tuple[str, ...] = ()  # attention keys already pushed to the notify URLs


@dataclass(frozen=True)
class AgentActivity:
    """An agent as attention needs it: its state, and when it last started an experiment."""

    name: str
    state: str
    created_at: float
    live: bool  # one of its experiments is registered or running
    last_started: float | None  # created_at of its newest experiment
    time_budget: float | None  # that experiment's time budget
    recent: tuple[Experiment, ...]  # its newest finished experiments, newest first


@dataclass(frozen=True)
class NewBest:
    experiment: Experiment
    previous: float  # the tag's best val_bpb before it


def _experiment(row: sqlite3.Row) -> Experiment:
    names = {f.name for f in fields(Experiment)}
    return Experiment(**{k: row[k] for k in row.keys() if k in names})  # noqa: SIM118 (sqlite3.Row)


def _has_table(ledger: Ledger) -> bool:
    return ledger.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'supervisor'"
                        ).fetchone() is not None


def read_supervisor(ledger: Ledger) -> SupervisorRow | None:
    """The supervisor's row, or None when no supervisor ever ran on this ledger."""
    conn = ledger.conn
    if not _has_table(ledger):
        return None
    row = conn.execute("SELECT * FROM supervisor WHERE id = ?", (SUPERVISOR_ROW,)).fetchone()
    if row is None:
        return None
    return SupervisorRow(pid=row["pid"], pid_start=row["pid_start"], host=row["host"] or "",
                         state=row["state"] or "stopped", message=row["message"] or "",
                         started_at=row["started_at"], heartbeat_at=row["heartbeat_at"],
                         waiting=_json(row["waiting_json"], dict),
                         notified=tuple(_json(row["notified_json"], list)))


def _json(text: str | None, kind: type) -> Any:
    try:
        value = json.loads(text or "")
    except ValueError:
        return kind()
    return value if isinstance(value, kind) else kind()


def write_supervisor(ledger: Ledger, **values: Any) -> None:
    """Upsert the supervisor's row: pid, pid_start, host, state, message, started_at, waiting,
    notified; the heartbeat is set to now with every write."""
    if "waiting" in values:
        values["waiting_json"] = json.dumps(values.pop("waiting"))
    if "notified" in values:
        values["notified_json"] = json.dumps(list(values.pop("notified")))
    values["heartbeat_at"] = time.time()
    with ledger.write():
        ledger.db.table("supervisor").upsert({"id": SUPERVISOR_ROW, **values}, pk="id")


def pending_reviews(ledger: Ledger) -> list[Experiment]:
    conn = ledger.conn
    rows = conn.execute("SELECT * FROM experiments WHERE review = 'pending' ORDER BY id")
    return [_experiment(row) for row in rows]


def agent_activity(ledger: Ledger, recent: int) -> list[AgentActivity]:
    """Every registered agent not removed, with its newest experiment and `recent` finished ones."""
    conn = ledger.conn
    out = []
    for name, state, created in conn.execute(
            "SELECT name, state, created_at FROM agents WHERE state != 'removed' ORDER BY name"
            ).fetchall():
        newest = conn.execute("SELECT created_at, time_budget, status FROM experiments "
                              "WHERE agent = ? ORDER BY id DESC LIMIT 1", (name,)).fetchone()
        finished = conn.execute("SELECT * FROM experiments WHERE agent = ? AND status = 'finished' "
                                "ORDER BY id DESC LIMIT ?", (name, recent)).fetchall()
        out.append(AgentActivity(name=name, state=state or "", created_at=created or 0.0,
                                 live=bool(newest) and newest[2] in LIVE_STATUSES,
                                 last_started=newest[0] if newest else None,
                                 time_budget=newest[1] if newest else None,
                                 recent=tuple(_experiment(row) for row in finished)))
    return out


def new_bests(ledger: Ledger, since: float) -> list[NewBest]:
    """Kept runs finished after `since` that beat every earlier kept run of their tag (a tag's
    first keep, its baseline, is not news)."""
    conn = ledger.conn
    rows = conn.execute(
        f"SELECT e.*, (SELECT MIN(p.val_bpb) FROM experiments p WHERE p.tag = e.tag AND "
        f"{_KEPT.format(t='p')} AND p.id < e.id) AS previous "
        f"FROM experiments e WHERE {_KEPT.format(t='e')} AND e.finished_at >= ? ORDER BY e.id",
        (since,)).fetchall()
    return [NewBest(_experiment(row), row["previous"]) for row in rows
            if row["previous"] is not None and row["val_bpb"] < row["previous"]]


def lost_with_child(ledger: Ledger, since: float) -> list[Experiment]:
    """Runs of ours marked lost after `since` that recorded a train.py child (pid + start time)."""
    conn = ledger.conn
    rows = conn.execute("SELECT * FROM experiments WHERE decision = 'lost' AND pid IS NOT NULL "
                        "AND pid_start IS NOT NULL AND finished_at >= ? "
                        "AND backend NOT IN ('observed', 'import') ORDER BY id", (since,))
    return [_experiment(row) for row in rows]
