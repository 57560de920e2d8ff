"""Cost of tamper evidence and batched imports on one SQLite file.

Prints: the time of an event write with the hash chain (register + decide, as a run does), the
time of `verify` over a ledger of N imported experiments, and the longest write-lock wait a live
writer saw while those N rows were imported in batches.

Usage:
    python bench/bench_trust.py                  # 100,000 imported rows
    python bench/bench_trust.py --rows 20000
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.ledger.chain import verify
from app.ledger.queries import insert_experiments
from app.ledger.store import Ledger


def event_writes(path: Path, runs: int = 300) -> float:
    """Mean seconds of one run's register + decide transactions."""
    with Ledger(path) as ledger:
        start = time.perf_counter()
        for i in range(runs):
            exp_id = ledger.register(agent="bench", tag="live", description=f"run {i}")
            ledger.update(exp_id, event="decide", status="finished", decision="discard",
                          val_bpb=1.0 + i * 1e-6)
        return (time.perf_counter() - start) / runs


def _live_writer(path: str, done: mp.Event, out: mp.Queue) -> None:
    """A runner's heartbeat in its own process: one small write transaction every 10 ms."""
    waits = []
    with Ledger(path) as ledger:
        exp_id = ledger.register(agent="live", status="running")
        while not done.is_set():
            started = time.perf_counter()
            ledger.add_steps(exp_id, [], progress_pct=1.0)
            waits.append(time.perf_counter() - started)
            time.sleep(0.01)
    out.put(waits)


def import_with_live_writer(path: Path, rows: int) -> tuple[float, float, int]:
    """(import seconds, longest live write in seconds, live writes done meanwhile)."""
    done, out = mp.Event(), mp.Queue()
    writer = mp.Process(target=_live_writer, args=(str(path), done, out))
    writer.start()
    data = ({"tag": "imported", "backend": "import", "status": "finished", "decision": "discard",
             "val_bpb": 1.0, "import_key": f"k{i}", "description": f"row {i}", "created_at": 1.0}
            for i in range(rows))
    with Ledger(path) as ledger:
        start = time.perf_counter()
        insert_experiments(ledger, data, actor="bench", agent="bench")
        took = time.perf_counter() - start
    done.set()
    waits = out.get()
    writer.join()
    return took, max(waits), len(waits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        per_run = event_writes(path)
        print(f"chained events: {per_run * 1000:.2f} ms per run (register + decide)")
        took, worst, writes = import_with_live_writer(path, args.rows)
        print(f"import of {args.rows:,} rows: {took:.1f} s; a live writer did {writes} writes, "
              f"longest wait {worst * 1000:.0f} ms (busy timeout 30 s)")
        with Ledger(path) as ledger:
            start = time.perf_counter()
            problems = verify(ledger)
            print(f"verify of {args.rows + 301:,} experiments: {time.perf_counter() - start:.2f} s, "
                  f"{len(problems)} problems")


if __name__ == "__main__":
    main()
