"""Named queries the runner, the observers and the importers ask: each returns typed rows.

Read-only unless the name says otherwise (`insert_experiments`).
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any

from app.ledger import chain
from app.ledger.limits import capped
from app.ledger.records import EXPERIMENT_COLUMNS, Experiment
from app.ledger.store import Ledger
from app.ledger.vocabulary import COMPARABLE_SQL, KEPT_SQL

EVAL_CONSTANT_COLUMNS = ("time_budget", "max_seq_len", "eval_tokens", "vocab_size")
_MAIN_BEST_MATCH = (*EVAL_CONSTANT_COLUMNS, "compare_key")  # what a main best must share with the run
_FIRST_KEEP_COLUMNS = ("branch", "tag")
IMPORT_BATCH = 5000  # rows per import transaction: ~0.1 s of write lock each
# Pause between import batches: longer than SQLite's longest busy-handler sleep (100 ms), so a
# live writer waiting for the lock gets it between two batches instead of starving.
BATCH_PAUSE_S = 0.12


def _experiment(ledger: Ledger, row: Any) -> Experiment | None:
    return ledger.get(row[0]) if row else None


def first_keep(ledger: Ledger, column: str, value: str) -> Experiment | None:
    """The first clean kept run whose `column` ("branch" or "tag") is `value` (rows from a
    results.tsv only once a human approved them)."""
    if column not in _FIRST_KEEP_COLUMNS:
        raise ValueError(f"first_keep by {column!r}: only {_FIRST_KEEP_COLUMNS}")
    return _experiment(ledger, ledger.conn.execute(
        f"SELECT id FROM experiments WHERE {column} = ? AND {KEPT_SQL} AND {COMPARABLE_SQL} "
        "ORDER BY id LIMIT 1", (value,)).fetchone())


def best_on_main(ledger: Ledger, main_branch: str | None, constants: dict[str, Any],
                 exclude_id: int) -> Experiment | None:
    """The best clean kept run run on `main_branch` or adopted into it, measured under the same
    eval `constants` and comparability key (a run that did not record one matches any)."""
    where = [KEPT_SQL, "id != ?", "(branch = ? OR adopted_sha != '')", COMPARABLE_SQL]
    args: list[Any] = [exclude_id, main_branch or ""]
    for key, value in constants.items():
        if key not in _MAIN_BEST_MATCH:
            raise ValueError(f"not an eval constant or compare_key: {key!r}")
        where.append(f"({key} IS NULL OR {key} = ?)")
        args.append(value)
    return _experiment(ledger, ledger.conn.execute(
        f"SELECT id FROM experiments WHERE {' AND '.join(where)} ORDER BY val_bpb, id LIMIT 1",
        args).fetchone())


def measured_commits(ledger: Ledger, branch: str, decisions: Sequence[str],
                     exclude_id: int | None = None) -> list[tuple[str, float]]:
    """(commit, val_bpb) of the clean measured runs on `branch` with one of `decisions`."""
    placeholders = ", ".join("?" for _ in decisions)
    rows = ledger.conn.execute(
        f"SELECT commit_sha, val_bpb FROM experiments WHERE branch = ? AND integrity = 0 "
        f"AND implausible = 0 AND {COMPARABLE_SQL} AND decision IN ({placeholders}) "
        "AND val_bpb IS NOT NULL AND commit_sha != '' AND id != ?", (branch, *decisions, exclude_id or -1))
    return [(sha, float(val)) for sha, val in rows]


def first_measurement(ledger: Ledger, branch: str, commit_sha: str) -> Experiment | None:
    """The first clean keep/discard measurement of `commit_sha` on `branch` (not a repeat)."""
    return _experiment(ledger, ledger.conn.execute(
        "SELECT id FROM experiments WHERE branch = ? AND commit_sha = ? AND repeat_of IS NULL "
        "AND decision IN ('keep', 'discard') AND val_bpb IS NOT NULL ORDER BY id LIMIT 1",
        (branch, commit_sha)).fetchone())


def newest_in_worktree(ledger: Ledger, worktree: str, *, except_backend: str) -> Experiment | None:
    """The newest experiment of `worktree` whose backend is not `except_backend`."""
    return _experiment(ledger, ledger.conn.execute(
        "SELECT id FROM experiments WHERE worktree = ? AND backend != ? ORDER BY id DESC LIMIT 1",
        (worktree, except_backend)).fetchone())


def import_key_known(ledger: Ledger, key: str) -> bool:
    """Whether a row with this import key (a results.tsv line) is in the ledger already."""
    return ledger.conn.execute("SELECT 1 FROM experiments WHERE import_key = ?",
                               (key,)).fetchone() is not None


def unimported_by_commit(ledger: Ledger, worktree: str, commit_prefix: str, *,
                         except_backend: str, prefer_backend: str) -> Experiment | None:
    """The run of `worktree` whose commit starts with `commit_prefix` (hex) and that no
    results.tsv line claimed yet: `prefer_backend` first, then the newest."""
    return _experiment(ledger, ledger.conn.execute(
        "SELECT id FROM experiments WHERE worktree = ? AND import_key IS NULL AND backend != ? "
        "AND commit_sha LIKE ? ORDER BY backend = ? DESC, id DESC LIMIT 1",
        (worktree, except_backend, commit_prefix + "%", prefer_backend)).fetchone())


def insert_experiments(ledger: Ledger, rows: Iterable[dict[str, Any]], *, actor: str = "cli",
                       agent: str = "", detail: dict[str, Any] | None = None,
                       batch: int = IMPORT_BATCH) -> int:
    """Insert finished experiments, skipping any whose import key is there already; how many were
    added. `batch` rows per transaction (live runs never wait long for the write lock), each with
    one chained `import` event attesting its rows. Raises LedgerConflict on any other conflict
    (that batch rolled back; the batches before it stay)."""
    added = 0
    for number, chunk in enumerate(_batches(rows, batch)):
        if number:
            time.sleep(BATCH_PAUSE_S)
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
                             actor=actor, detail=json.dumps(
                                 {**(detail or {}), "added": len(ids), "first": ids[0],
                                  "last": ids[-1]}, default=str), batch=ids)
        added += len(ids)
    return added


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


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
