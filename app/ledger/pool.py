"""The GPU pool as people see it: each device with its holder, readings and duty cycle, and the
queue. Built from the lease tables (app/ledger/leases.py) for `cockpit gpus` and the TUI strip."""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

from app.ledger import leases
from app.ledger.leases import GpuDevice, Lease
from app.ledger.store import Ledger

DUTY_WINDOW_S = 3600.0  # the duty cycle is the share of this window a device held a run
STALE_S = 10.0  # NVML readings older than this are not shown (nobody samples an idle device)


@dataclass(frozen=True)
class DeviceView:
    pool: str
    slot: str
    model: str = ""
    experiment_id: int | None = None  # the holder, None while idle
    agent: str = ""
    held_since: float | None = None
    util_pct: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    temp_c: float | None = None
    duty: float = 0.0  # 0..1 over the last DUTY_WINDOW_S

    def held_s(self, now: float) -> float | None:
        return None if self.held_since is None else max(0.0, now - self.held_since)


@dataclass(frozen=True)
class PoolView:
    devices: tuple[DeviceView, ...]
    queue: tuple[Lease, ...]  # queued leases, oldest first (every pool)
    at: float

    def pools(self) -> list[str]:
        return list(dict.fromkeys([d.pool for d in self.devices] + [q.pool for q in self.queue]))

    def queue_of(self, pool: str) -> list[Lease]:
        return [lease for lease in self.queue if lease.pool == pool]

    def places(self) -> dict[int, tuple[int, int]]:
        """Experiment id -> (its place in its pool's queue, from 1; that queue's length)."""
        out = {}
        for pool in self.pools():
            queue = self.queue_of(pool)
            out.update({lease.experiment_id: (place, len(queue))
                        for place, lease in enumerate(queue, start=1)
                        if lease.experiment_id is not None})
        return out


def duty_cycles(history: Sequence[Lease], now: float,
                window_s: float = DUTY_WINDOW_S) -> dict[tuple[str, str], float]:
    """(pool, slot) -> share of the last `window_s` it was held (overlapping leases count once)."""
    spans: dict[tuple[str, str], list[tuple[float, float]]] = {}
    start = now - window_s
    for lease in history:
        if lease.acquired_at is None:
            continue
        begin, end = max(lease.acquired_at, start), min(lease.released_at or now, now)
        if end > begin:
            for slot in lease.slot_list:
                spans.setdefault((lease.pool, slot), []).append((begin, end))
    out = {}
    for key, parts in spans.items():
        total, reach = 0.0, start
        for begin, end in sorted(parts):
            begin = max(begin, reach)
            if end > begin:
                total += end - begin
                reach = end
        out[key] = min(1.0, total / window_s)
    return out


def load_pool(ledger: Ledger, now: float | None = None,
              devices: Sequence[GpuDevice] | None = None) -> PoolView:
    """The pool from the ledger; `devices` (e.g. from this machine's settings) replaces the
    devices runners announced, for the pools they name."""
    now = time.time() if now is None else now
    known = list(leases.devices(ledger))
    if devices is not None:
        named = {d.pool for d in devices}
        readings = {(d.pool, d.slot): d for d in known}
        known = [_with_readings(d, readings.get((d.pool, d.slot))) for d in devices] + [
            d for d in known if d.pool not in named]
    current = leases.active(ledger)
    holders = {(lease.pool, slot): lease for lease in current if lease.state == "held"
               for slot in lease.slot_list}
    duty = duty_cycles(leases.history(ledger, now - DUTY_WINDOW_S), now)
    views = []
    for device in known:
        holder = holders.get((device.pool, device.slot))
        if device.sampled_at is not None and now - device.sampled_at > STALE_S:
            device = replace(device, util_pct=None, mem_used_mb=None, mem_total_mb=None,
                             temp_c=None)
        views.append(DeviceView(
            pool=device.pool, slot=device.slot, model=device.model or "",
            experiment_id=holder.experiment_id if holder else None,
            agent=holder.agent if holder else "",
            held_since=holder.acquired_at if holder else None, util_pct=device.util_pct,
            mem_used_mb=device.mem_used_mb, mem_total_mb=device.mem_total_mb,
            temp_c=device.temp_c, duty=duty.get((device.pool, device.slot), 0.0)))
    return PoolView(tuple(views), tuple(lease for lease in current if lease.state == "queued"),
                    now)


def _with_readings(device: GpuDevice, stored: GpuDevice | None) -> GpuDevice:
    if stored is None or device.util_pct is not None:
        return device
    return replace(device, util_pct=stored.util_pct, mem_used_mb=stored.mem_used_mb,
                   mem_total_mb=stored.mem_total_mb, temp_c=stored.temp_c,
                   sampled_at=stored.sampled_at)
