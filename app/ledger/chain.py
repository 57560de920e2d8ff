"""Tamper evidence: every event carries a hash chained to the previous event's, and the state of
the experiment it is about (decision, val_bpb, ...), so a row changed outside the cockpit is found.

Usage:
    problems = verify(ledger)            # `cockpit verify`; the supervisor calls it periodically
    head = chain_head(ledger)            # remember it; verify(ledger, known_head=head) later
                                         # also finds events removed from the end of the chain

Each event stores `state`: JSON `{"cols": [...], "rows": {"<id>": [values]}}` for the experiment
it is about, read inside the same transaction right after the write, or `{"cols": [...],
"hashes": {"<id>": "<row hash>"}}` for a batch (an import, the seal written when an old ledger is
migrated). `hash` = sha256(previous hash, the event's columns). `verify` recomputes the chain and
compares every experiment with the state its latest event recorded.

What it proves: a writer that did not go through the cockpit (`sqlite3 ... UPDATE experiments SET
decision='keep'`, an edited or deleted event) is found. What it cannot: someone who can write the
file can also recompute the chain with this code; the supervisor's remembered head narrows that to
a rewrite of the whole chain between two checks.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.ledger.store import Ledger

# The experiment columns a decision rests on; each event records them for its experiment.
COVERED = (
    "tag", "agent", "branch", "commit_sha", "backend", "status", "decision", "review", "val_bpb",
    "integrity", "implausible", "adopted_sha", "time_budget", "max_seq_len", "eval_tokens",
    "vocab_size",
)
SEAL_BATCH = 5000  # experiments per seal event when an existing ledger is migrated
_EVENT_COLUMNS = "id, at, kind, experiment_id, agent, actor, detail, state"


@dataclass(frozen=True)
class Problem:
    """One thing changed outside the cockpit: `what` is "event", "experiment" or "note"."""

    what: str
    id: int
    message: str


def row_hash(values: Sequence[Any]) -> str:
    return hashlib.sha256(_canonical(list(values)).encode()).hexdigest()[:16]


def event_hash(prev: str, row: Sequence[Any]) -> str:
    """The chain link: sha256 over the previous hash and the event's columns, in order."""
    return hashlib.sha256((prev + "\n" + _canonical(list(row))).encode()).hexdigest()


def _canonical(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=True)


def _head(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT id, hash FROM events ORDER BY id DESC LIMIT 1").fetchone()
    return (int(row[0]), row[1] or "") if row else (0, "")


def _covered(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, list[Any]]:
    ids = list(ids)
    out: dict[int, list[Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ", ".join("?" for _ in chunk)
        for row in conn.execute(f"SELECT id, {', '.join(COVERED)} FROM experiments "
                                f"WHERE id IN ({marks})", chunk):
            out[int(row[0])] = list(row[1:])
    return out


def append(conn: sqlite3.Connection, *, at: float, kind: str, experiment_id: int | None,
           agent: str, actor: str, detail: str, batch: Sequence[int] = ()) -> int:
    """Insert one chained event (inside the caller's write transaction); returns its id.
    `batch`: experiments it attests by row hash (imports) besides `experiment_id`."""
    state = ""
    if experiment_id is not None:
        values = _covered(conn, [experiment_id]).get(experiment_id)
        if values is not None:
            state = _canonical({"cols": list(COVERED), "rows": {str(experiment_id): values}})
    elif batch:
        rows = _covered(conn, batch)
        state = _canonical({"cols": list(COVERED),
                            "hashes": {str(i): row_hash(v) for i, v in rows.items()}})
    last_id, prev = _head(conn)
    event_id = last_id + 1
    row = (event_id, at, kind, experiment_id, agent, actor, detail, state)
    conn.execute(f"INSERT INTO events ({_EVENT_COLUMNS}, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (*row, event_hash(prev, row)))
    return event_id


def implicit_event(values: dict[str, Any]) -> str | None:
    """A write that changes what a decision rests on is always an event (the chain covers it)."""
    return "update" if set(values) & set(COVERED) else None


def chain_head(ledger: Ledger) -> tuple[int, str]:
    """(id, hash) of the newest event: what a later verify can check is still there."""
    return _head(ledger.conn)


def event_count(ledger: Ledger) -> int:
    return int(ledger.conn.execute("SELECT COUNT(*) FROM events").fetchone()[0])


# ---------------------------------------------------------------------------
# Migration: an existing ledger gets its chain computed, and its experiments sealed

def seal_existing(conn: sqlite3.Connection, at: float) -> None:
    """Hash the events already there (in id order) and seal every experiment's current state
    (trust on first use: whatever was there before the migration is taken as it is)."""
    conn.execute("DROP TRIGGER IF EXISTS events_append_only_update")
    prev = ""
    for row in conn.execute(f"SELECT {_EVENT_COLUMNS} FROM events ORDER BY id").fetchall():
        prev = event_hash(prev, tuple(row))
        conn.execute("UPDATE events SET hash = ? WHERE id = ?", (prev, row[0]))
    conn.execute("CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events "
                 "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")
    ids = [r[0] for r in conn.execute("SELECT id FROM experiments ORDER BY id")]
    for start in range(0, len(ids), SEAL_BATCH):
        chunk = ids[start:start + SEAL_BATCH]
        append(conn, at=at, kind="seal", experiment_id=None, agent="", actor="cockpit",
               detail=_canonical({"first": chunk[0], "last": chunk[-1], "count": len(chunk)}),
               batch=chunk)


# ---------------------------------------------------------------------------
# Verification

def verify(ledger: Ledger, known_head: tuple[int, str] | None = None) -> list[Problem]:
    """Recompute the event chain and check every experiment against its latest event; a list of
    what was changed outside the cockpit (empty: nothing found)."""
    conn = ledger.conn
    problems: list[Problem] = []
    latest: dict[int, tuple[int, list[str], Any]] = {}  # exp id -> (event id, cols, values|hash)
    notes: dict[int, tuple[str, str]] = {}  # note id -> (text, author) its event recorded
    prev = ""
    seen_head = False
    for row in conn.execute(f"SELECT {_EVENT_COLUMNS}, hash FROM events ORDER BY id"):
        stored = row[8] or ""
        if event_hash(prev, tuple(row[:8])) != stored:
            problems.append(Problem("event", row[0], f"event #{row[0]} ({row[2]}) does not follow "
                                    "the chain: it was changed, inserted, or an event before it "
                                    "was removed, outside the cockpit"))
        prev = stored  # go on from what is stored: one edit is one problem, not all that follow
        if known_head is not None and row[0] == known_head[0]:
            seen_head = stored == known_head[1]
        _remember(row[0], row[7], latest)
        if row[2] == "note":
            detail = _json(row[6])
            if isinstance(detail.get("note_id"), int):
                notes[detail["note_id"]] = (str(detail.get("text", "")), row[5])
    if known_head is not None and known_head[0] and not seen_head:
        problems.append(Problem("event", known_head[0], f"event #{known_head[0]}, seen in an "
                                "earlier check, is gone or was rewritten"))
    for exp_id, *values in conn.execute(f"SELECT id, {', '.join(COVERED)} FROM experiments "
                                        "ORDER BY id"):
        problem = _check_row(exp_id, dict(zip(COVERED, values)), latest.get(exp_id))
        if problem:
            problems.append(problem)
    for note_id, text, author in conn.execute("SELECT id, text, author FROM notes ORDER BY id"):
        if notes.get(note_id) != (text, author):
            problems.append(Problem("note", note_id, f"note {note_id} (by {author!r}) differs "
                                    "from its event, or has none: changed outside the cockpit"))
    return problems


def _json(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _remember(event_id: int, state: str | None, latest: dict[int, tuple[int, list[str], Any]]
              ) -> None:
    if not state:
        return
    try:
        parsed = json.loads(state)
        cols = list(parsed["cols"])
    except (ValueError, KeyError, TypeError):
        return  # the chain check has already reported this event
    for key, values in (parsed.get("rows") or {}).items():
        latest[int(key)] = (event_id, cols, list(values))
    for key, digest in (parsed.get("hashes") or {}).items():
        latest[int(key)] = (event_id, cols, str(digest))


def _check_row(exp_id: int, row: dict[str, Any], attested: tuple[int, list[str], Any] | None
               ) -> Problem | None:
    if attested is None:
        return Problem("experiment", exp_id, f"experiment #{exp_id} has no event: it was inserted "
                       "outside the cockpit")
    event_id, cols, recorded = attested
    current = [row.get(c) for c in cols]
    if isinstance(recorded, str):
        if row_hash(current) == recorded:
            return None
        return Problem("experiment", exp_id, f"experiment #{exp_id} differs from what event "
                       f"#{event_id} recorded (now decision {row.get('decision')!r}, val_bpb "
                       f"{row.get('val_bpb')!r}): changed outside the cockpit")
    changed = [f"{c} {old!r} -> {new!r}" for c, old, new in zip(cols, recorded, current)
               if old != new]
    if not changed:
        return None
    return Problem("experiment", exp_id, f"experiment #{exp_id} was changed outside the cockpit "
                   f"after event #{event_id}: {'; '.join(changed)}")
