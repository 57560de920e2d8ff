"""GPU leases: which run holds which device (or Modal slot), who waits, and the devices a pool has.

A lease row is `queued` (waiting, FIFO by id), `held` (its `slots` are the devices) or `released`
(kept for the duty cycle and the audit trail). Every change runs inside one BEGIN IMMEDIATE
transaction, so two runners can never take the same device: the free devices are computed and
taken under the write lock. Whether a holder is still alive is the caller's question (`gone`,
answered from pid + start time in app/run/lease.py): the ledger stays free of process logic.
"""
from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.ledger.store import Ledger

ACTIVE = ("queued", "held")


@dataclass
class Lease:
    id: int
    pool: str
    state: str  # queued | held | released
    requested_at: float
    slots: str = ""  # comma-separated devices while held (and after, for the history)
    experiment_id: int | None = None
    agent: str = ""
    holder_pid: int | None = None
    holder_start: float | None = None
    reason: str = ""  # why it was released: done | killed | reclaimed: ...
    acquired_at: float | None = None
    released_at: float | None = None
    child_pid: int | None = None  # the experiment's training process (joined, not stored)
    child_start: float | None = None

    @property
    def slot_list(self) -> list[str]:
        return [s for s in self.slots.split(",") if s]


@dataclass
class GpuDevice:
    pool: str
    slot: str
    model: str = ""
    util_pct: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    temp_c: float | None = None
    sampled_at: float | None = None
    seen_at: float | None = None


_LEASE_SQL = ("SELECT l.*, e.pid AS child_pid, e.pid_start AS child_start FROM leases l "
              "LEFT JOIN experiments e ON e.id = l.experiment_id")
_LEASE_FIELDS = {f.name for f in fields(Lease)}


def _lease(row: sqlite3.Row | tuple, names: Sequence[str]) -> Lease:
    return Lease(**{k: v for k, v in zip(names, row) if k in _LEASE_FIELDS})


def _leases(ledger: Ledger, where: str, args: Sequence = ()) -> list[Lease]:
    cursor = ledger.conn.execute(f"{_LEASE_SQL} WHERE {where} ORDER BY l.id", tuple(args))
    names = [d[0] for d in cursor.description]
    return [_lease(row, names) for row in cursor]


def allocate(slots: Sequence[str], held: Iterable[Lease], queue: Sequence[Lease],
             per_run: int) -> dict[int, list[str]]:
    """Strict FIFO: the free devices go to the queue's head, `per_run` each, in order; a head
    that cannot be served blocks those behind it (no overtaking by smaller requests)."""
    busy = {slot for lease in held for slot in lease.slot_list}
    free = [slot for slot in slots if slot not in busy]
    out: dict[int, list[str]] = {}
    for lease in queue:
        if len(free) < per_run:
            break
        out[lease.id], free = free[:per_run], free[per_run:]
    return out


# --- reads ----------------------------------------------------------------------------------


def active(ledger: Ledger, pool: str | None = None) -> list[Lease]:
    """Queued and held leases, oldest first."""
    if pool is None:
        return _leases(ledger, "l.state IN ('queued', 'held')")
    return _leases(ledger, "l.state IN ('queued', 'held') AND l.pool = ?", (pool,))


def get(ledger: Ledger, lease_id: int) -> Lease | None:
    found = _leases(ledger, "l.id = ?", (lease_id,))
    return found[0] if found else None


def queue_place(ledger: Ledger, lease_id: int) -> tuple[int, int]:
    """(1-based place of a queued lease in its pool's queue, queue length); (0, n) if not queued."""
    row = ledger.conn.execute("SELECT pool, state FROM leases WHERE id = ?", (lease_id,)).fetchone()
    if row is None:
        return 0, 0
    ids = [r[0] for r in ledger.conn.execute(
        "SELECT id FROM leases WHERE pool = ? AND state = 'queued' ORDER BY id", (row[0],))]
    return (ids.index(lease_id) + 1 if lease_id in ids else 0), len(ids)


def history(ledger: Ledger, since: float) -> list[Lease]:
    """Leases that held devices at some time after `since` (still held, or released since)."""
    return _leases(ledger, "l.acquired_at IS NOT NULL AND (l.state = 'held' OR l.released_at > ?)",
                   (since,))


def devices(ledger: Ledger, pool: str | None = None) -> list[GpuDevice]:
    """The devices runners last announced for a pool (or every pool), in their declared order."""
    sql = "SELECT * FROM gpu_devices" + (" WHERE pool = ?" if pool else "") + " ORDER BY rowid"
    cursor = ledger.conn.execute(sql, (pool,) if pool else ())
    names = [d[0] for d in cursor.description]
    return [GpuDevice(**dict(zip(names, row))) for row in cursor]


def signature(ledger: Ledger) -> tuple:
    """Changes whenever a lease is taken, queued or released."""
    return tuple(ledger.conn.execute(
        "SELECT MAX(id), COUNT(*), MAX(acquired_at), MAX(released_at) FROM leases").fetchone())


# --- writes (each one BEGIN IMMEDIATE transaction) -------------------------------------------


def enqueue(ledger: Ledger, *, pool: str, experiment_id: int | None, agent: str,
            holder_pid: int, holder_start: float | None) -> int:
    """A new lease at the back of `pool`'s queue."""
    with ledger.write() as conn:
        cursor = conn.execute(
            "INSERT INTO leases (pool, state, requested_at, experiment_id, agent, holder_pid, "
            "holder_start) VALUES (?, 'queued', ?, ?, ?, ?, ?)",
            (pool, time.time(), experiment_id, agent, holder_pid, holder_start))
        return int(cursor.lastrowid or 0)


def _release_gone(ledger: Ledger, pool: str, gone: Callable[[Lease], bool],
                  keep: int | None = None) -> list[Lease]:
    """Inside a transaction: release the pool's active leases whose holder is gone."""
    freed = [lease for lease in active(ledger, pool) if lease.id != keep and gone(lease)]
    now = time.time()
    for lease in freed:
        ledger.conn.execute(
            "UPDATE leases SET state = 'released', released_at = ?, reason = ? WHERE id = ?",
            (now, f"reclaimed: holder pid {lease.holder_pid} is gone", lease.id))
        ledger._event("lease-reclaim", lease.experiment_id, lease.agent, "cockpit",
                      {"lease": lease.id, "pool": lease.pool, "slots": lease.slots,
                       "was": lease.state})
    return freed


def try_acquire(ledger: Ledger, lease_id: int, slots: Sequence[str], per_run: int,
                gone: Callable[[Lease], bool]) -> list[str] | None:
    """Take `per_run` free devices for a queued lease if its turn has come (first reclaiming
    leases whose holder is gone); the devices, or None while it must wait. LookupError when the
    lease is no longer queued (released by someone else)."""
    with ledger.write() as conn:
        mine = get(ledger, lease_id)
        if mine is None or mine.state != "queued":
            raise LookupError(f"lease {lease_id} is {mine.state if mine else 'missing'}")
        _release_gone(ledger, mine.pool, gone, keep=lease_id)
        current = active(ledger, mine.pool)
        got = allocate(slots, [lease for lease in current if lease.state == "held"],
                       [lease for lease in current if lease.state == "queued"], per_run)
        if lease_id not in got:
            return None
        taken = got[lease_id]
        conn.execute("UPDATE leases SET state = 'held', slots = ?, acquired_at = ? WHERE id = ?",
                     (",".join(taken), time.time(), lease_id))
        ledger._event("lease-acquire", mine.experiment_id, mine.agent, "runner",
                      {"lease": lease_id, "pool": mine.pool, "slots": ",".join(taken)})
        return taken


def would_acquire(ledger: Ledger, lease_id: int, slots: Sequence[str],
                  per_run: int) -> bool:
    """A read-only look: would `try_acquire` give this lease devices now (ignoring reclaims)?"""
    mine = get(ledger, lease_id)
    if mine is None or mine.state != "queued":
        return True  # let try_acquire say what happened
    current = active(ledger, mine.pool)
    return lease_id in allocate(slots, [lease for lease in current if lease.state == "held"],
                                [lease for lease in current if lease.state == "queued"], per_run)


def release(ledger: Ledger, lease_id: int, reason: str = "done") -> bool:
    """End a queued or held lease; False if it had already ended (e.g. reclaimed)."""
    with ledger.write() as conn:
        mine = get(ledger, lease_id)
        if mine is None or mine.state not in ACTIVE:
            return False
        conn.execute("UPDATE leases SET state = 'released', released_at = ?, reason = ? "
                     "WHERE id = ?", (time.time(), reason, lease_id))
        ledger._event("lease-release", mine.experiment_id, mine.agent, "runner",
                      {"lease": lease_id, "pool": mine.pool, "slots": mine.slots,
                       "was": mine.state, "reason": reason})
    return True


def reclaim(ledger: Ledger, gone: Callable[[Lease], bool]) -> list[Lease]:
    """Release every active lease (all pools) whose holder is gone; the leases released."""
    if ledger.read_only:
        return []
    candidates = [lease for lease in active(ledger) if gone(lease)]
    if not candidates:
        return []
    freed: list[Lease] = []
    with ledger.write():
        for pool in sorted({lease.pool for lease in candidates}):
            freed += _release_gone(ledger, pool, gone)
    return freed


def announce_devices(ledger: Ledger, pool: str, slots: Sequence[tuple[str, str]]) -> None:
    """Record the pool's devices (slot, model) in order; devices no longer in it are dropped."""
    now = time.time()
    with ledger.write() as conn:
        known = [row[0] for row in conn.execute(
            "SELECT slot FROM gpu_devices WHERE pool = ? ORDER BY rowid", (pool,))]
        if known != [slot for slot, _ in slots]:
            conn.execute("DELETE FROM gpu_devices WHERE pool = ?", (pool,))
        for slot, model in slots:
            conn.execute("INSERT INTO gpu_devices (pool, slot, model, seen_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (pool, slot) DO UPDATE SET model = excluded.model, "
                         "seen_at = excluded.seen_at", (pool, slot, model, now))


def record_stats(ledger: Ledger, pool: str, stats: dict[str, dict[str, float | None]]) -> None:
    """NVML readings of some devices: util_pct, mem_used_mb, mem_total_mb, temp_c."""
    now = time.time()
    with ledger.write() as conn:
        for slot, values in stats.items():
            conn.execute("UPDATE gpu_devices SET util_pct = ?, mem_used_mb = ?, mem_total_mb = ?, "
                         "temp_c = ?, sampled_at = ? WHERE pool = ? AND slot = ?",
                         (values.get("util_pct"), values.get("mem_used_mb"),
                          values.get("mem_total_mb"), values.get("temp_c"), now, pool, slot))
