"""`cockpit history --json` (and the other queries) on a generated 100k-experiment ledger.

Builds a ledger with N finished experiments spread over tags, agents and categories (bulk insert
in one transaction), then runs each query as a real `cockpit` process and reports its wall time,
its peak RSS (from wait4) and the size of what it printed.

Usage:
    python bench/bench_history.py                # 100,000 experiments
    python bench/bench_history.py --experiments 10000 --keep
"""
from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

QUERIES = (
    ("history --json --limit 0", ["history", "--json", "--limit", "0"]),
    ("history --json (newest 50)", ["history", "--json"]),
    ("history --json --tag t3 --limit 0", ["history", "--json", "--tag", "t3", "--limit", "0"]),
    ("best --json", ["best", "--json"]),
    ("report --json", ["report", "--json"]),
    ("suggest --json --all", ["suggest", "--json", "--all"]),
    ("status --json", ["status", "--json"]),
)


def build(path: Path, count: int, seed: int = 0) -> float:
    """Runs in its own process: peak RSS is inherited across fork, so the measuring process
    must stay small and import nothing of the cockpit."""
    sys.path.insert(0, str(REPO))
    from app.ledger.store import Ledger
    from app.policy import CATEGORIES

    rng = random.Random(seed)
    started = time.perf_counter()
    with Ledger(path) as ledger, ledger.write() as conn:
        now = time.time() - count * 360
        rows = []
        for i in range(count):
            decision = rng.choices(("keep", "discard", "crash"), (0.15, 0.75, 0.10))[0]
            val = None if decision == "crash" else round(1.0 - i * 1e-7 + rng.gauss(0, 0.003), 6)
            agent = f"agent{i % 16}"
            tag = f"t{i % 8}"
            rows.append((tag, agent, f"autoresearch/{tag}-{agent}", f"{rng.getrandbits(160):040x}",
                         f"experiment {i}: tweak {rng.choice(CATEGORIES)} by {rng.random():.3f}",
                         "because it might help", rng.choice(CATEGORIES), "finished", decision,
                         val, 300.0, 953, 45060.2, int(val is not None and rng.random() < 0.05),
                         now + i * 360, now + i * 360 + 10, now + i * 360 + 330))
        conn.executemany(
            "INSERT INTO experiments (tag, agent, branch, commit_sha, description, hypothesis, "
            "category, status, decision, val_bpb, training_seconds, num_steps, peak_vram_mb, "
            "near_miss, created_at, started_at, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return time.perf_counter() - started


def measure(ledger_path: Path, args: list[str]) -> tuple[float, int, int, int]:
    """(wall seconds, peak RSS bytes, stdout bytes, exit status) of one `cockpit` process."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COCKPIT_LEDGER": str(ledger_path)}
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", *args], stdout=out,
                                stderr=subprocess.DEVNULL, env=env, cwd=ledger_path.parent)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        size = out.seek(0, os.SEEK_END)
    return elapsed, usage.ru_maxrss * 1024, size, proc.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep the generated ledger")
    parser.add_argument("--build-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_into:
        print(build(args.build_into, args.experiments))
        return
    tmp = Path(tempfile.mkdtemp(prefix="cockpit-bench-"))
    path = tmp / "ledger.db"
    built = subprocess.run([sys.executable, __file__, "--build-into", str(path), "--experiments",
                            str(args.experiments)], capture_output=True, text=True, check=True)
    seconds = float(built.stdout.strip())
    print(f"built {args.experiments:,} experiments in {seconds:.1f} s "
          f"({path.stat().st_size / 1e6:.1f} MB) ; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs")
    baseline = measure(path, ["--help"])
    print(f"{'cockpit --help (startup only)':<36} {baseline[0]:6.2f} s  peak RSS "
          f"{baseline[1] / 1e6:6.1f} MB")
    for name, query in QUERIES:
        elapsed, rss, size, code = measure(path, query)
        flag = "" if code == 0 else f"  EXIT {code}"
        print(f"{'cockpit ' + name:<36} {elapsed:6.2f} s  peak RSS {rss / 1e6:6.1f} MB  "
              f"output {size / 1e6:7.2f} MB{flag}")
    if args.keep:
        print(f"ledger kept at {path}")
    else:
        for file in tmp.iterdir():
            file.unlink()
        tmp.rmdir()


if __name__ == "__main__":
    main()
