"""Ledger write throughput: N writer processes doing what runners do, on one SQLite file.

Each writer registers experiments and streams step rows into them the way `cockpit run` does
(one BEGIN IMMEDIATE transaction per heartbeat: a step row plus the live columns), as fast as it
can. Prints transactions/s, rows/s, commit latency percentiles and any lock errors.

Usage:
    python bench/bench_ledger.py                 # 8 writers, 4 s each
    python bench/bench_ledger.py --writers 1 --seconds 2
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.ledger.store import Ledger, StepRow

STEPS_PER_EXPERIMENT = 50  # then the writer finishes it and registers the next


def writer(db_path: str, seconds: float, index: int, out: mp.Queue) -> None:
    latencies: list[float] = []
    rows = transactions = errors = 0
    with Ledger(db_path) as ledger:
        first = time.perf_counter()
        deadline = first + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            exp_id = ledger.register(agent=f"w{index}", tag="bench", status="running",
                                     description="bench run")
            latencies.append(time.perf_counter() - start)
            rows, transactions = rows + 2, transactions + 1  # experiment + register event
            for step in range(STEPS_PER_EXPERIMENT):
                start = time.perf_counter()
                try:
                    ledger.add_steps(exp_id, [StepRow(step=step, t=step * 1.0, loss=4.0, progress_pct=step)],
                                     progress_pct=float(step), last_loss=4.0, remaining_s=10.0)
                except Exception as exc:  # "database is locked" would land here
                    errors += 1
                    print(f"writer {index}: {exc}", file=sys.stderr)
                    continue
                latencies.append(time.perf_counter() - start)
                rows, transactions = rows + 1, transactions + 1
                if time.perf_counter() >= deadline:
                    break
            ledger.update(exp_id, event="finish", status="finished", decision="discard")
            rows, transactions = rows + 1, transactions + 1
    out.put((rows, transactions, errors, latencies, first, time.perf_counter()))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db_path = str(Path(tmp) / "ledger.db")
        Ledger(db_path).close()
        out: mp.Queue = mp.Queue()
        procs = [mp.Process(target=writer, args=(db_path, args.seconds, i, out))
                 for i in range(args.writers)]
        for proc in procs:
            proc.start()
        results = [out.get() for _ in procs]
        for proc in procs:
            proc.join()
        elapsed = max(r[5] for r in results) - min(r[4] for r in results)  # perf_counter is system-wide
        with Ledger(db_path) as ledger:
            stored = ledger.conn.execute("SELECT (SELECT COUNT(*) FROM experiments) + "
                                         "(SELECT COUNT(*) FROM steps)").fetchone()[0]
    rows = sum(r[0] for r in results)
    transactions = sum(r[1] for r in results)
    errors = sum(r[2] for r in results)
    latencies = [x for r in results for x in r[3]]
    print(f"writers:            {args.writers} processes x {args.seconds:g} s "
          f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    print(f"transactions:       {transactions:,} ({transactions / elapsed:,.0f}/s)")
    print(f"rows inserted:      {rows:,} ({rows / elapsed:,.0f}/s: experiments, steps, events)")
    print(f"experiment + step rows found in the ledger afterwards: {stored:,}")
    print(f"commit latency:     p50 {percentile(latencies, 0.5) * 1000:.2f} ms, "
          f"p99 {percentile(latencies, 0.99) * 1000:.2f} ms, max {max(latencies) * 1000:.1f} ms "
          f"over {len(latencies):,} commits")
    print(f"lock errors:        {errors}")


if __name__ == "__main__":
    main()
