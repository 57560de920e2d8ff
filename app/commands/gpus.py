"""`cockpit gpus [--json]`: the GPU pool: each device, its holder, how long, the queue, and
(where NVML is there) utilisation, memory and temperature, plus the duty cycle of the last hour."""
from __future__ import annotations

import argparse
import time
from typing import Any

from app.commands import (
    CommandError,
    add_json_flag,
    here,
    main_or_none,
    one_line,
    open_ledger,
    print_json,
    say,
)
from app.config import load_settings
from app.ledger.leases import GpuDevice
from app.ledger.pool import PoolView, load_pool
from app.run.gpus import sample
from app.run.lease import PoolError, PoolSpec, pool_spec


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gpus", help="the GPU pool: devices, holders, queue, utilisation",
        description="Each device of the pool (NVML or the `gpus` setting) with the experiment "
                    "and agent holding it, for how long, the queue, NVML readings where there "
                    "is a driver, and the share of the last hour each device held a run.")
    add_json_flag(p)
    p.set_defaults(handler=gpus_command)


def _machine_devices(specs: list[PoolSpec]) -> list[GpuDevice]:
    """This machine's pools as configured, with fresh NVML readings of the local devices."""
    now = time.time()
    out = []
    for spec in specs:
        stats = sample(spec.devices) if spec.pool == "local" else {}
        for device in spec.devices:
            reading = stats.get(device.id)
            out.append(GpuDevice(pool=spec.pool, slot=device.id, model=device.model,
                                 sampled_at=now if reading else None,
                                 **(reading.as_dict() if reading else {})))
    return out


def gpus_command(args: argparse.Namespace) -> int:
    settings = load_settings(main_or_none(here()))
    try:
        specs = [s for s in (pool_spec(settings, "local"), pool_spec(settings, "modal")) if s]
    except PoolError as exc:
        raise CommandError(str(exc)) from exc
    with open_ledger(args) as ledger:
        view = load_pool(ledger, devices=_machine_devices(specs))
    if args.json:
        print_json(to_json(view))
    else:
        for line in text_lines(view):
            say(line)
    return 0


def to_json(view: PoolView) -> dict[str, Any]:
    now = view.at
    return {"at": now, "pools": [{
        "pool": pool,
        "devices": [{"id": d.slot, "model": d.model, "experiment": d.experiment_id,
                     "agent": d.agent, "held_s": d.held_s(now), "util_pct": d.util_pct,
                     "mem_used_mb": d.mem_used_mb, "mem_total_mb": d.mem_total_mb,
                     "temp_c": d.temp_c, "duty_1h": round(d.duty, 4)}
                    for d in view.devices if d.pool == pool],
        "queue_length": len(view.queue_of(pool)),
        "queue": [{"experiment": q.experiment_id, "agent": q.agent,
                   "waiting_s": now - q.requested_at} for q in view.queue_of(pool)],
    } for pool in view.pools()]}


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _readings(util: float | None, used: float | None, total: float | None,
              temp: float | None) -> str:
    parts = []
    if util is not None:
        parts.append(f"util {util:3.0f}%")
    if used is not None and total:
        parts.append(f"mem {used / 1024:.1f}/{total / 1024:.1f} GB")
    if temp is not None:
        parts.append(f"{temp:.0f}°C")
    return "  ".join(parts)


def text_lines(view: PoolView) -> list[str]:
    if not view.pools():
        return [("no GPU pool: no NVIDIA driver here and no `gpus` declared in [tool.cockpit] "
                "(runs train on whatever device torch picks)")]
    lines = []
    for pool in view.pools():
        devices = [d for d in view.devices if d.pool == pool]
        queue = view.queue_of(pool)
        lines.append(f"{pool} pool: {len(devices)} device(s), "
                     f"{sum(d.experiment_id is not None for d in devices)} busy, "
                     f"{len(queue)} queued")
        for d in devices:
            held = d.held_s(view.at)
            holder = (f"#{d.experiment_id} {one_line(d.agent, 16)} held {_duration(held)}"
                      if held is not None else "idle")
            lines.append(f"  {d.slot:<8} {one_line(d.model or 'declared', 24):<24} {holder:<30} "
                         f"duty 1h {d.duty * 100:3.0f}%  "
                         + _readings(d.util_pct, d.mem_used_mb, d.mem_total_mb, d.temp_c))
        for place, q in enumerate(queue, start=1):
            lines.append(f"  queued {place}: #{q.experiment_id} {one_line(q.agent, 16)} "
                         f"waiting {_duration(view.at - q.requested_at)}")
    return [line.rstrip() for line in lines]
