"""Benchmark: the GPU pool under 8 concurrent `cockpit run` on 3 declared devices.

Usage:
    python bench/bench_gpu_pool.py                       # 4 rounds of 8 runs, 3 recoveries
    python bench/bench_gpu_pool.py --rounds 1 --runs 8 --devices 3 --train-s 2 --recoveries 1

Real `cockpit run` processes on one ledger, in real git worktrees; train.py is the tests' stand-in
(tests/runnerhelpers.py), which records its CUDA_VISIBLE_DEVICES and start/end times. Printed:
runs per device, overlap (two runs on one device at once: must be 0), the hand-off gap from a
lease's release (ledger) to the next run's train.py start on that device (p50/p99; target p99 <=
1 s), and lease recovery after a runner SIGKILL (kill -> the queued run's train.py starts; target
<= 10 s), with a silent orphaned train.py that the next acquirer has to stop first.
"""
from __future__ import annotations

import argparse
import itertools
import os
import signal
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
from app.ledger import leases  # noqa: E402
from app.ledger.store import Ledger  # noqa: E402
from runnerhelpers import agent_worktree, cockpit_env, make_project, start_cockpit  # noqa: E402
from waiting import wait_for  # noqa: E402


def recorded(path: Path) -> dict[int, dict]:
    """pid -> {device, start, end} from the stand-in's record file."""
    runs: dict[int, dict] = defaultdict(dict)
    if path.exists():
        for line in path.read_text().splitlines():
            pid, device, event, at = line.split()
            runs[int(pid)].update(device=device, **{event: float(at)})
    return dict(runs)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def project(root: Path, devices: int, agents: int) -> tuple[Path, list[Path], Path]:
    slots = ", ".join(f'"{i}"' for i in range(devices))
    main = make_project(root, config=f"gpus = [{slots}]")
    worktrees = [agent_worktree(main, f"agent{i}", tag="bench") for i in range(agents)]
    db = main / ".autoresearch" / "ledger.db"
    Ledger(db).close()
    return main, worktrees, db


def concurrent_rounds(root: Path, args: argparse.Namespace) -> None:
    _main, worktrees, db = project(root / "pool", args.devices, args.runs)
    record = root / "pool-record.txt"
    steps = max(1, round(args.train_s / 0.25))
    env = cockpit_env(STANDIN_RECORD=str(record), STANDIN_STEPS=str(steps),
                      STANDIN_STEP_SECONDS="0.25")
    t0 = time.time()
    failures = 0
    for round_no in range(args.rounds):
        procs = [start_cockpit("run", "-m", f"round {round_no} run {i}", cwd=wt, env=env)
                 for i, wt in enumerate(worktrees)]
        for proc in procs:
            _, err = proc.communicate(timeout=600)
            failures += proc.returncode != 0
            if proc.returncode != 0:
                print(f"run failed ({proc.returncode}): {err.strip()[-300:]}")
    wall = time.time() - t0
    runs = recorded(record)
    with Ledger(db, read_only=True) as ledger:
        by_pid = {e.pid: e for e in ledger.experiments() if e.pid}
        history = leases.history(ledger, 0)
        mismatched = sum(1 for pid, run in runs.items()
                         if pid in by_pid and by_pid[pid].gpu_ids != run["device"])
    start_of = {e.id: runs[pid]["start"] for pid, e in by_pid.items() if pid in runs}
    per_device: dict[str, list[dict]] = defaultdict(list)
    for run in runs.values():
        per_device[run["device"]].append(run)
    overlaps = 0
    for spans in per_device.values():
        spans.sort(key=lambda r: r["start"])
        overlaps += sum(after["start"] < before["end"]
                        for before, after in itertools.pairwise(spans))
    gaps = []  # only hand-offs to a run that was already waiting when the device was released
    for lease in history:
        nxt = min((other for other in history if other.slots == lease.slots
                   and other.acquired_at and lease.released_at
                   and other.acquired_at >= lease.released_at), key=lambda o: o.acquired_at or 0,
                  default=None)
        if (nxt is not None and lease.released_at and nxt.requested_at < lease.released_at
                and nxt.experiment_id in start_of):
            gaps.append(start_of[nxt.experiment_id] - lease.released_at)
    total = args.rounds * args.runs
    print(f"\n{total} runs ({args.rounds} rounds of {args.runs} concurrent `cockpit run`) on "
          f"{args.devices} declared devices, {args.train_s:g} s stand-in training each: "
          f"wall {wall:.1f} s, failed {failures}, recorded {len(runs)}")
    print("runs per device: " + ", ".join(f"{d}: {len(per_device[d])}" for d in sorted(per_device)))
    print(f"overlap (two runs on one device at once): {overlaps}")
    print(f"device recorded on the experiment != train.py's CUDA_VISIBLE_DEVICES: {mismatched}")
    if gaps:
        print(f"hand-off gap, lease release -> queued run's train.py start (n={len(gaps)}): "
              f"p50 {percentile(gaps, 0.5) * 1000:.0f} ms, p99 {percentile(gaps, 0.99) * 1000:.0f} ms, "
              f"max {max(gaps) * 1000:.0f} ms")


def recovery(root: Path, n: int) -> None:
    _main, worktrees, db = project(root / f"recovery{n}", 1, 2)
    record = root / f"recovery{n}-record.txt"
    victim = start_cockpit("run", "-m", "victim", cwd=worktrees[0], env=cockpit_env(
        STANDIN_RECORD=str(record), STANDIN_STEPS="2", STANDIN_STEP_SECONDS="120"))

    def victim_training() -> int | None:
        with Ledger(db, read_only=True) as ledger:
            exp = ledger.experiments()[0] if ledger.experiments() else None
        return exp.pid if exp and exp.pid and exp.pid in recorded(record) else None
    orphan = wait_for(victim_training, timeout=60)
    waiter = start_cockpit("run", "-m", "waiter", cwd=worktrees[1], env=cockpit_env(
        STANDIN_RECORD=str(record), STANDIN_STEPS="2", STANDIN_STEP_SECONDS="0.1"))

    def queued() -> bool:
        with Ledger(db, read_only=True) as ledger:
            return [e.status for e in ledger.live()] == ["running", "queued"]
    wait_for(queued, timeout=60)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    killed_at = time.time()
    waiter.communicate(timeout=120)
    starts = [r["start"] for pid, r in recorded(record).items() if pid != orphan]
    with Ledger(db, read_only=True) as ledger:
        first = next(lease for lease in leases.history(ledger, 0) if lease.experiment_id == 1)
    print(f"recovery {n}: lease reclaimed {first.released_at - killed_at:.2f} s after SIGKILL "
          f"({first.reason}); next train.py started after {min(starts) - killed_at:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8, help="concurrent `cockpit run` per round")
    parser.add_argument("--devices", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--train-s", type=float, default=2.0, help="stand-in training seconds")
    parser.add_argument("--recoveries", type=int, default=3)
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith(("COCKPIT_", "STANDIN_", "AUTORESEARCH_"))]:
        del os.environ[key]
    print(f"cores={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-gpu-pool-") as tmp:
        concurrent_rounds(Path(tmp), args)
        for n in range(1, args.recoveries + 1):
            recovery(Path(tmp), n)
    return 0


if __name__ == "__main__":
    sys.exit(main())
