"""Benchmark: cockpit cold start to first paint on a 100k-experiment ledger, as a ratio to a bare
`python -c "import textual"` process (target <= 2x).

Usage:
    .venv/bin/python bench/bench_tui_startup.py                  # 100k experiments, 5 runs each
    .venv/bin/python bench/bench_tui_startup.py --experiments 20000 --runs 3

Each run is a fresh interpreter (cold imports, cold SQLite connection) that goes through the real
CLI entry point (`app.cli.main(["--ledger", PATH])`) with the app made headless; it prints a line
on the first painted frame and another once the experiments table holds its first rows. The
parent times both from spawn (wall) and the child reports its own CPU time (process_time: all its
threads, interpreter start included), which a loaded machine disturbs far less than wall time.
The baseline is the same two figures for `python -c "import textual"`. A second variant starts the
TUI without the CLI (`app.tui.launch`), to separate the TUI's cost from the CLI's imports, and a
one-Static Textual app shows the floor any Textual app starts from.
Figures are medians.

Bytecode: a process that cannot use .pyc files compiles every module from source on each start
(PYTHONDONTWRITEBYTECODE=1 with no __pycache__ does that), which measures the compiler, not the
app. The children therefore run with a private PYTHONPYCACHEPREFIX, warmed by one untimed run of
each command, as on any machine where the cockpit has started once before.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.ledger.store import Ledger  # noqa: E402

AGENTS = 8
DECISIONS = ("discard",) * 14 + ("keep", "crash", "timeout", "killed")

BASELINE = "import time, textual; print('done', time.process_time(), flush=True)"
MINIMAL_APP = r"""
import time
from textual.app import App
from textual.widgets import Static

class Hello(App):
    def compose(self):
        yield Static("hello")
    def on_mount(self):
        self.call_after_refresh(self.painted)
    def painted(self):
        print("paint", time.process_time(), flush=True)
        self.exit()

Hello().run(headless=True)
"""
CHILD = r"""
import sys, time
import app.tui.app as tui_app

def report(app):
    print("paint", time.process_time(), flush=True)
    def data_shown():
        if app.dashboard.table.row_count:
            print("data", time.process_time(), flush=True)
            app.exit()
    app.set_interval(0.005, data_shown)

original_mount = tui_app.CockpitApp.on_mount
def on_mount(self):
    original_mount(self)
    self.call_after_refresh(report, self)
tui_app.CockpitApp.on_mount = on_mount
original_run = tui_app.CockpitApp.run
tui_app.CockpitApp.run = lambda self, **kw: original_run(self, headless=True, **kw)

if sys.argv[2] == "cli":
    from app.cli import main
    sys.exit(main(["--ledger", sys.argv[1]]))
from app.tui import launch
sys.exit(launch(sys.argv[1]))
"""


def build_ledger(path: Path, experiments: int) -> None:
    """A ledger shaped like a long swarm: many agents, mostly discards, a few live runs."""
    rng = random.Random(0)
    Ledger(path).close()
    with Ledger(path) as ledger, ledger.write() as conn:
        now = time.time() - experiments * 30
        best = 1.0
        rows = []
        for i in range(experiments):
            decision = rng.choice(DECISIONS)
            val = None if decision in ("crash", "timeout", "killed") else best + rng.uniform(-0.001, 0.01)
            if decision == "keep" and val is not None:
                best = min(best, val)
            rows.append((f"tag{i // 20000}", f"agent{i % AGENTS}", "finished", decision, val,
                         f"idea {i}: try something [{i % 7}]", now + i * 30))
        conn.executemany("INSERT INTO experiments (tag, agent, status, decision, val_bpb, "
                         "description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO agents (name, state, branch, created_at, updated_at) "
                         "VALUES (?, 'running', ?, 0, 0)",
                         [(f"agent{a}", f"autoresearch/agent{a}") for a in range(AGENTS)])
        conn.executemany("UPDATE experiments SET status = 'running', decision = NULL, "
                         "progress_pct = 40 WHERE id = ?", [(experiments - a,) for a in range(AGENTS)])


def child_env(pycache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(pycache)}


def time_process(args: list[str], env: dict[str, str]) -> dict[str, tuple[float, float]]:
    """Each marker line's (wall seconds from spawn, the child's CPU seconds at that point)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    seen: dict[str, tuple[float, float]] = {}
    assert proc.stdout is not None
    for line in proc.stdout:
        mark, _, cpu = line.strip().partition(" ")
        if mark in ("done", "paint", "data") and mark not in seen:
            seen[mark] = (time.perf_counter() - start, float(cpu))
    proc.wait()
    if proc.returncode != 0:
        raise SystemExit(f"{args[:3]} failed: {proc.stderr.read()[-2000:]}")
    return seen


def _row(label: str, runs: list[tuple[float, float]]) -> tuple[float, float]:
    wall, cpu = (statistics.median(x) for x in zip(*runs))
    print(f"{label:<34} wall {wall * 1000:6.0f} ms   cpu {cpu * 1000:6.0f} ms   "
          f"(wall runs: {', '.join(f'{w * 1000:.0f}' for w, _ in runs)})")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    runs: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        t0 = time.perf_counter()
        build_ledger(path, args.experiments)
        print(f"ledger: {args.experiments:,} experiments, {path.stat().st_size / 1e6:.1f} MB "
              f"(built in {time.perf_counter() - t0:.1f} s); {args.runs} runs each, medians")
        env = child_env(Path(tmp) / "pycache")
        for command in ([python, "-c", BASELINE], [python, "-c", CHILD, str(path), "cli"]):
            time_process(command, env)  # warm the bytecode cache, untimed
        for _ in range(args.runs):
            runs.setdefault("python -c 'import textual'", []).append(
                time_process([python, "-c", BASELINE], env)["done"])
            runs.setdefault("minimal Textual app first paint", []).append(
                time_process([python, "-c", MINIMAL_APP], env)["paint"])
            for variant in ("cli", "launch"):
                marks = time_process([python, "-c", CHILD, str(path), variant], env)
                runs.setdefault(f"cockpit ({variant}) first paint", []).append(marks["paint"])
                runs.setdefault(f"cockpit ({variant}) table filled", []).append(marks["data"])
    figures = {label: _row(label, values) for label, values in runs.items()}
    base_wall, base_cpu = figures["python -c 'import textual'"]
    for label, (wall, cpu) in figures.items():
        if label != "python -c 'import textual'":
            print(f"ratio {label:<30} wall {wall / base_wall:4.2f}x   cpu {cpu / base_cpu:4.2f}x "
                  f"(target <= 2x for first paint)")


if __name__ == "__main__":
    main()
