"""Benchmark app/observe/watch.py: train.py change-to-event latency, and CPU used while idle.

Usage:
    .venv/bin/python bench/bench_watch.py                     # 8 worktree roots, 40 edits, 10 s idle
    .venv/bin/python bench/bench_watch.py --roots 32 --idle 20

Latency is from just before a write of train.py in one root to the moment the consumer receives
TrainPyChanged for that root, through the blocking loop (thread) and the async loop (awatch).
Idle CPU is this process's CPU time (all threads) over wall time while nothing changes.
"""
from __future__ import annotations

import argparse
import asyncio
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.observe.watch import TrainPyChanged, WatchEvent, WorktreeWatcher  # noqa: E402

PAUSE_BETWEEN_EDITS = 0.3  # seconds, so each edit is its own debounce group
EVENT_TIMEOUT = 5.0  # seconds before an edit counts as lost


def make_roots(base: Path, count: int) -> list[Path]:
    roots = []
    for i in range(count):
        root = base / f"agent-{i}"
        (root / "sub").mkdir(parents=True)
        (root / "train.py").write_text("DEPTH = 8\n")
        roots.append(root)
    return roots


def summary(name: str, latencies_ms: list[float], lost: int) -> str:
    ordered = sorted(latencies_ms)
    p90 = ordered[int(0.9 * (len(ordered) - 1))]
    return (f"{name:<6} n={len(ordered):<3} median {statistics.median(ordered):6.1f} ms   "
            f"p90 {p90:6.1f} ms   max {ordered[-1]:6.1f} ms   min {ordered[0]:6.1f} ms   lost {lost}")


def bench_thread(roots: list[Path], edits: int, idle_s: float) -> tuple[list[float], int, float]:
    watcher = WorktreeWatcher(roots)
    received: queue.Queue[tuple[float, WatchEvent]] = queue.Queue()

    def consume() -> None:
        for batch in watcher:
            now = time.perf_counter()
            for event in batch:
                received.put((now, event))

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    time.sleep(0.5)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    time.sleep(idle_s)
    idle_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    latencies, lost = [], 0
    for i in range(edits):
        root = roots[i % len(roots)]
        start = time.perf_counter()
        (root / "train.py").write_text(f"DEPTH = {i}\n")
        while True:
            try:
                at, event = received.get(timeout=EVENT_TIMEOUT)
            except queue.Empty:
                lost += 1
                break
            if event == TrainPyChanged(root):
                latencies.append((at - start) * 1000)
                break
        time.sleep(PAUSE_BETWEEN_EDITS)
    watcher.stop()
    thread.join(timeout=5)
    return latencies, lost, idle_cpu


async def bench_async(roots: list[Path], edits: int) -> tuple[list[float], int]:
    watcher = WorktreeWatcher(roots)
    received: asyncio.Queue[tuple[float, WatchEvent]] = asyncio.Queue()

    async def consume() -> None:
        async for batch in watcher:
            now = time.perf_counter()
            for event in batch:
                received.put_nowait((now, event))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    latencies, lost = [], 0
    for i in range(edits):
        root = roots[i % len(roots)]
        start = time.perf_counter()
        (root / "train.py").write_text(f"DEPTH = {i}\n")
        while True:
            try:
                at, event = await asyncio.wait_for(received.get(), EVENT_TIMEOUT)
            except asyncio.TimeoutError:
                lost += 1
                break
            if event == TrainPyChanged(root):
                latencies.append((at - start) * 1000)
                break
        await asyncio.sleep(PAUSE_BETWEEN_EDITS)
    watcher.stop()
    await asyncio.wait_for(task, 5)
    return latencies, lost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--roots", type=int, default=8, help="worktree roots watched")
    parser.add_argument("--edits", type=int, default=40, help="train.py edits timed per loop")
    parser.add_argument("--idle", type=float, default=10.0, help="seconds of idle CPU measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        roots = make_roots(Path(tmp), args.roots)
        thread_ms, thread_lost, idle_cpu = bench_thread(roots, args.edits, args.idle)
        async_ms, async_lost = asyncio.run(bench_async(roots, args.edits))
    print(f"watching {args.roots} worktree roots (non-recursive, debounce 200 ms, step 50 ms)")
    print("train.py edit -> TrainPyChanged latency:")
    print("  " + summary("thread", thread_ms, thread_lost))
    print("  " + summary("async", async_ms, async_lost))
    print(f"idle CPU over {args.idle:.0f} s: {100 * idle_cpu:.2f}% of one core")


if __name__ == "__main__":
    main()
