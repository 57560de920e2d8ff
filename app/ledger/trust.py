"""Ledger queries the trust rules need: which worktrees are agents', and imports written in
batches, so that a huge import never holds the write lock for long (live runs keep recording)."""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from app.ledger import chain
from app.ledger.limits import capped
from app.ledger.records import EXPERIMENT_COLUMNS

if TYPE_CHECKING:
    from app.ledger.store import Ledger

IMPORT_BATCH = 2000  # rows per transaction: ~20-50 ms of write lock each


def agent_worktrees(ledger: Ledger) -> dict[str, str]:
    """Worktree path -> agent name, for every agent the ledger knows and every worktree a run
    was recorded in (imports excluded: their path is whatever the file said)."""
    rows = ledger.conn.execute(
        "SELECT worktree, name FROM agents WHERE worktree != '' UNION ALL "
        "SELECT worktree, MAX(agent) FROM experiments WHERE worktree != '' AND agent != '' "
        "AND backend != 'import' GROUP BY worktree")
    out: dict[str, str] = {}
    for path, agent in rows:
        out.setdefault(path, agent)
    return out


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def insert_experiments(ledger: Ledger, rows: Iterable[dict[str, Any]], *, actor: str, agent: str,
                       detail: dict[str, Any], batch: int = IMPORT_BATCH) -> int:
    """Insert rows not yet there (a row whose import_key exists is skipped), `batch` rows per
    transaction, each transaction with one chained `import` event attesting its rows."""
    added = 0
    for chunk in _batches(rows, batch):
        with ledger.write() as conn:
            ids = []
            for values in map(capped, chunk):
                unknown = set(values) - set(EXPERIMENT_COLUMNS)
                if unknown:
                    raise ValueError(f"unknown experiment fields: {sorted(unknown)}")
                marks = ", ".join("?" for _ in values)
                cursor = conn.execute(f"INSERT OR IGNORE INTO experiments ({', '.join(values)}) "
                                      f"VALUES ({marks})", list(values.values()))
                if cursor.rowcount:
                    ids.append(int(cursor.lastrowid or 0))
            if ids:
                chain.append(conn, at=time.time(), kind="import", experiment_id=None, agent=agent,
                             actor=actor, detail=json.dumps({**detail, "added": len(ids),
                                                             "first": ids[0], "last": ids[-1]},
                                                            default=str), batch=ids)
        added += len(ids)
    return added
