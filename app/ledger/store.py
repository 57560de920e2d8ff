"""The run ledger: one SQLite file per repository, shared by every worktree and agent.

Plain tables (experiments, steps, events, notes, agents) that sqlite-utils and Datasette open as
they are. Connections use WAL, synchronous=NORMAL, a 30 s busy timeout and foreign keys; every
read-then-write runs inside BEGIN IMMEDIATE, because a deferred transaction that reads first fails
at once with "database is locked" when another writer holds the lock.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from app.errors import InfraError
from app.ledger import chain
from app.ledger.identity import LedgerGone, WatchedFile, open_failure
from app.ledger.limits import capped, cut
from app.ledger.records import (
    AGENT_COLUMNS,
    EXPERIMENT_COLUMNS,
    LIVE_STATUSES,
    Agent,
    Event,
    Experiment,
    Note,
    StepRow,
    finite,
    summary_columns,
)
from app.ledger.schema import MIGRATIONS, SCHEMA_VERSION
from app.ledger.vocabulary import COMPARABLE_SQL, KEPT_SQL, LIVE_SQL

__all__ = ["LEDGER_ERRORS", "LIVE_STATUSES", "Agent", "Event", "Experiment", "Ledger",
           "LedgerBusy", "LedgerConflict", "LedgerError", "LedgerGone", "Note", "StepRow", "finite",
           "find_ledger_path", "summary_columns"]

LEDGER_ENV = "COCKPIT_LEDGER"
BUSY_TIMEOUT_S = 30.0


class LedgerError(InfraError):
    """A ledger that cannot be used: not SQLite, from a newer cockpit, or not found."""


class LedgerBusy(LedgerError):
    """Another writer held the write lock past the busy timeout; nothing was written."""


class LedgerConflict(LedgerError):
    """A write that breaks a constraint (a duplicate import key, a missing experiment): the
    whole transaction was rolled back."""


# What any ledger call may raise: our refusals and SQLite's own (locked, corrupt, disk I/O).
LEDGER_ERRORS: tuple[type[Exception], ...] = (LedgerError, LedgerGone, sqlite3.Error)


def _row_to(cls: type, row: sqlite3.Row) -> Any:
    names = {f.name for f in fields(cls)}
    present = row.keys()  # a Row iterates its values, not its keys
    return cls(**{k: row[k] for k in present if k in names})


def find_ledger_path(start: Path | str | None = None, override: str | os.PathLike | None = None) -> Path:
    """The ledger for the repository containing `start`: <main worktree>/.autoresearch/ledger.db."""
    explicit = override or os.environ.get(LEDGER_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    from app.git import GitError, main_worktree

    try:
        return main_worktree(Path(start or os.getcwd())) / ".autoresearch" / "ledger.db"
    except GitError as exc:
        raise LedgerError(f"{exc}; pass --ledger PATH or set {LEDGER_ENV}") from exc


class Ledger(WatchedFile):
    """A connection to one ledger file; cheap to open, one per thread."""

    def __init__(self, path: Path | str, *, read_only: bool = False, create: bool = True) -> None:
        self.path = Path(path)
        self.read_only = read_only
        if not self.path.exists() and (read_only or not create):
            raise LedgerError(f"no ledger at {self.path}")
        self._prepare()  # a missing ledger where one was created is refused; its folder made
        import sqlite_utils  # ~0.5 s of imports (numpy): paid on first use, not at CLI/TUI start

        self.conn = self._remember(self._connect())
        self.db = sqlite_utils.Database(self.conn)
        try:
            self._check_and_migrate()
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise LedgerError(open_failure(exc, self.path)) from exc
        except LedgerError:
            self.conn.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        if self.read_only:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")
        return conn

    def _schema_version(self) -> int:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(
                f"{self.path} was written by a newer cockpit (schema v{version}, this one knows "
                f"v{SCHEMA_VERSION}): upgrade cockpit; the ledger was left unchanged")
        return version

    def _check_and_migrate(self) -> None:
        version = self._schema_version()
        if version == 0:
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            version = self._schema_version()  # again: another process may have just created it
            if tables and version == 0:
                raise LedgerError(f"{self.path} is an SQLite file but not a cockpit ledger "
                                  f"(tables: {', '.join(sorted(tables)[:5])})")
        if self.read_only:
            if version < SCHEMA_VERSION:
                raise LedgerError(f"{self.path} has schema v{version}; open it once without "
                                  f"--read-only to migrate it to v{SCHEMA_VERSION}")
            return
        if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        if version == SCHEMA_VERSION:
            return
        with self.write():
            version = self._schema_version()
            for target in sorted(v for v in MIGRATIONS if v > version):
                MIGRATIONS[target](self.db)
            self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A BEGIN IMMEDIATE transaction: the write lock is taken before the first read."""
        if self.read_only:
            raise LedgerError("the ledger is open read-only")
        try:
            self._begin()  # the file checked; a lock held past the busy timeout: LedgerBusy
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:  # a failed COMMIT leaves it open; some errors end it
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.IntegrityError):
                raise LedgerConflict(str(exc)) from exc
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise LedgerBusy(f"the ledger stayed locked by another writer ({exc})") from exc
            raise

    def _insert(self, table: str, values: dict[str, Any]) -> int:
        """Insert one row (inside a write()); its rowid."""
        cursor = self.db.table(table).insert(values)
        if cursor.last_rowid is None:
            raise LedgerError(f"no row inserted into {table}")
        return int(cursor.last_rowid)

    def data_version(self) -> int:
        """Changes whenever another connection commits; cheap enough to poll every 100 ms."""
        return self.conn.execute("PRAGMA data_version").fetchone()[0]

    # --- experiments -------------------------------------------------------------------------

    def register(self, *, actor: str = "runner", guard: Callable[[Ledger], None] | None = None,
                 **values: Any) -> int:
        """Insert an experiment with its `register` event; `guard` runs first in the same
        transaction and may raise to refuse (a check no other writer can slip past)."""
        unknown = set(values) - set(EXPERIMENT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown experiment fields: {sorted(unknown)}")
        values = {"created_at": time.time(), **capped(values)}
        with self.write():
            if guard is not None:
                guard(self)
            exp_id = self._insert("experiments", values)
            self._event("register", exp_id, values.get("agent", ""), actor,
                        {"description": values.get("description", "")})
        return exp_id

    def update(self, exp_id: int, *, event: str | None = None, actor: str = "runner",
               detail: dict[str, Any] | None = None, **values: Any) -> None:
        """Set fields on an experiment, with an optional audit event in the same transaction."""
        unknown = set(values) - set(EXPERIMENT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown experiment fields: {sorted(unknown)}")
        event, values = event or chain.implicit_event(values), capped(values)
        with self.write():
            agent = self._agent_of(exp_id)
            if values:
                self.db.table("experiments").update(exp_id, values)
            if event:
                self._event(event, exp_id, agent, actor, detail or {})

    def transition(self, exp_id: int, expect: dict[str, Any], *, event: str | None = None,
                   actor: str = "runner", detail: dict[str, Any] | None = None,
                   **values: Any) -> bool:
        """Compare-and-set: update only if every `expect` column still holds its value (a tuple
        means any of its values); False, and nothing written, if another writer got there first."""
        unknown = (set(values) | set(expect)) - set(EXPERIMENT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown experiment fields: {sorted(unknown)}")
        event, values = event or chain.implicit_event(values), capped(values)
        with self.write():
            row = self.conn.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
            if row is None:
                raise LedgerError(f"no experiment #{exp_id}")
            for column, wanted in expect.items():
                if row[column] not in (wanted if isinstance(wanted, tuple) else (wanted,)):
                    return False
            if values:
                self.db.table("experiments").update(exp_id, values)
            if event:
                self._event(event, exp_id, row["agent"] or "", actor, detail or {})
        return True

    def _agent_of(self, exp_id: int) -> str:
        row = self.conn.execute("SELECT agent FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no experiment #{exp_id}")
        return row[0] or ""

    def get(self, exp_id: int) -> Experiment:
        row = self.conn.execute("SELECT * FROM experiments WHERE id = ?", (exp_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no experiment #{exp_id}")
        return _row_to(Experiment, row)

    def experiments(self, *, tag: str | None = None, agent: str | None = None,
                    decision: str | None = None, status: str | None = None,
                    category: str | None = None, branch: str | None = None,
                    since_id: int = 0, limit: int | None = None, newest_first: bool = False,
                    ) -> list[Experiment]:
        rows = self._select("experiments", {"tag": tag, "agent": agent, "decision": decision,
                                            "status": status, "category": category,
                                            "branch": branch},
                            newest_first=newest_first, limit=limit, since_id=since_id)
        return [_row_to(Experiment, r) for r in rows]

    def _select(self, table: str, equal: dict[str, Any], *, newest_first: bool = False,
                limit: int | None = None, since_id: int = 0) -> sqlite3.Cursor:
        """Rows of `table` whose columns equal the non-None values of `equal`, in id order."""
        where, args = ["id > ?"], [since_id]
        for column, value in equal.items():
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT * FROM {table} WHERE {' AND '.join(where)} ORDER BY id"
        if newest_first:
            sql += " DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return self.conn.execute(sql, args)

    def live(self) -> list[Experiment]:
        rows = self.conn.execute(f"SELECT * FROM experiments WHERE {LIVE_SQL} ORDER BY id")
        return [_row_to(Experiment, r) for r in rows]

    def best(self, *, tag: str | None = None, branch: str | None = None,
             exclude_id: int | None = None, comparable: bool = True) -> Experiment | None:
        """The lowest val_bpb among kept runs (keep or approved), optionally per tag or branch;
        rows from a results.tsv only once a human approved them (unless `comparable=False`)."""
        where = [KEPT_SQL]
        if comparable:
            where.append(COMPARABLE_SQL)
        args: list[Any] = []
        if tag is not None:
            where.append("tag = ?")
            args.append(tag)
        if branch is not None:
            where.append("branch = ?")
            args.append(branch)
        if exclude_id is not None:
            where.append("id != ?")
            args.append(exclude_id)
        row = self.conn.execute(
            f"SELECT * FROM experiments WHERE {' AND '.join(where)} ORDER BY val_bpb, id LIMIT 1",
            args).fetchone()
        return _row_to(Experiment, row) if row else None

    # --- steps -------------------------------------------------------------------------------

    def add_steps(self, exp_id: int, rows: Sequence[StepRow], **live: Any) -> None:
        """Append sampled step metrics and refresh the heartbeat/live columns in one transaction."""
        with self.write():
            if rows:
                self.db.table("steps").insert_all(
                    {"experiment_id": exp_id, **vars(r)} for r in rows)
            self.db.table("experiments").update(exp_id, {"heartbeat_at": time.time(), **live})

    def steps(self, exp_id: int) -> list[StepRow]:
        rows = self.conn.execute(
            "SELECT * FROM steps WHERE experiment_id = ? ORDER BY step", (exp_id,))
        return [_row_to(StepRow, r) for r in rows]

    # --- events and notes --------------------------------------------------------------------

    def _event(self, kind: str, exp_id: int | None, agent: str, actor: str,
               detail: dict[str, Any], batch: Sequence[int] = ()) -> None:
        chain.append(self.conn, at=time.time(), kind=kind, experiment_id=exp_id, agent=agent,
                     actor=actor, detail=json.dumps(detail, default=str), batch=batch)

    def event(self, kind: str, *, experiment_id: int | None = None, agent: str = "",
              actor: str = "cli", **detail: Any) -> None:
        with self.write():
            if experiment_id is not None and not agent:
                agent = self._agent_of(experiment_id)
            self._event(kind, experiment_id, agent, actor, detail)

    def events(self, experiment_id: int | None = None, *, kind: str | None = None,
               limit: int | None = None) -> list[Event]:
        out = []
        for r in self._select("events", {"experiment_id": experiment_id, "kind": kind}, limit=limit):
            ev = _row_to(Event, r)
            ev.detail = json.loads(r["detail"] or "{}")
            out.append(ev)
        return out

    def add_note(self, text: str, *, experiment_id: int | None = None, agent: str = "",
                 author: str = "human") -> int:
        text = cut(text)
        with self.write():
            if experiment_id is not None:
                agent = agent or self._agent_of(experiment_id)
            note_id = self._insert("notes", {"at": time.time(), "text": text,
                                             "experiment_id": experiment_id, "agent": agent,
                                             "author": author})
            self._event("note", experiment_id, agent, author, {"note_id": note_id, "text": text})
        return note_id

    def notes(self, *, experiment_id: int | None = None, agent: str | None = None,
              limit: int | None = None) -> list[Note]:
        rows = self._select("notes", {"experiment_id": experiment_id, "agent": agent},
                            newest_first=True, limit=limit)
        return [_row_to(Note, r) for r in rows]

    # --- agents ------------------------------------------------------------------------------

    def upsert_agent(self, name: str, *, actor: str = "cli", event: str | None = None,
                     expect_state: str | tuple[str, ...] | None = None, **values: Any) -> bool:
        """Create or update an agent. With `expect_state`, compare-and-set: write only if the
        agent exists in that state (or one of those states); False, nothing written, otherwise."""
        unknown = set(values) - set(AGENT_COLUMNS)
        if unknown:
            raise ValueError(f"unknown agent fields: {sorted(unknown)}")
        expected = (expect_state,) if isinstance(expect_state, str) else expect_state
        now = time.time()
        with self.write():
            exists = self.conn.execute("SELECT state FROM agents WHERE name = ?", (name,)).fetchone()
            if expected is not None and (exists is None or exists[0] not in expected):
                return False
            if exists:
                self.db.table("agents").update(name, {**values, "updated_at": now})
            else:
                self._insert("agents", {"name": name, "created_at": now, "updated_at": now,
                                        **values})
            if event:
                self._event(event, None, name, actor, values)
        return True

    def agents(self) -> list[Agent]:
        return [_row_to(Agent, r) for r in self.conn.execute("SELECT * FROM agents ORDER BY name")]

    def mark_agent_gone(self, name: str, actor: str = "watcher") -> bool:
        """The agent's worktree vanished: state gone (once); False if unknown or already so."""
        agent = self.get_agent(name)
        if agent is None or agent.state in ("gone", "removed") or self.read_only:
            return False
        return self.upsert_agent(name, actor=actor, event="agent-gone", state="gone",
                                 expect_state=agent.state)

    def get_agent(self, name: str) -> Agent | None:
        row = self.conn.execute("SELECT * FROM agents WHERE name = ?", (name,)).fetchone()
        return _row_to(Agent, row) if row else None
