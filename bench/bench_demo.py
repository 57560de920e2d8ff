"""Benchmark: what `cockpit demo` shows within its first minutes, for a few seeds.

Usage:
    python bench/bench_demo.py                         # seeds 1 2 3, 180 s each, fresh sandboxes
    python bench/bench_demo.py --seeds 4 --budget 10 --reuse

Runs the real headless demo (`cockpit demo --no-tui --duration S`) per seed and reads its ledger:
time to the first finished experiment (from the command's start: sandbox, corpus, tokenizer and
the baselines included), experiments finished within S seconds and from how many agents, and keeps
beyond each agent's baseline. `--reuse` runs every seed in one sandbox (data prepared once), as a
user's second `cockpit demo` would. The load average is printed: other work on the machine
changes these figures a lot.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.commands.demo import summarize
from app.demo.sandbox import read_state


def run_seed(root: Path, seed: int, seconds: float, budget: int, agents: int) -> dict:
    load = os.getloadavg()[0]
    t0 = time.time()
    cmd = [sys.executable, "-m", "app.cli", "demo", "--dir", str(root), "--no-tui", "--duration",
           str(seconds), "--seed", str(seed), "--budget", str(budget), "--agents", str(agents)]
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "COCKPIT_LEDGER")}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 180)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        raise SystemExit(f"seed {seed}: cockpit demo failed ({done.returncode})")
    session = read_state(root)["sessions"][-1]
    summary = summarize(root / ".autoresearch" / "ledger.db", session["tag"], session["started_at"])
    within = [e for e in summary.finished if e.finished_at and e.finished_at <= t0 + seconds]
    first = summary.first_finished_at
    kept = [e.val_bpb for e in sorted(within, key=lambda e: e.finished_at or 0)
            if e.decision == "keep" and e.val_bpb]
    return {"seed": seed, "load": load, "first_s": None if first is None else first - t0,
            "finished": len(within), "agents": len({e.agent for e in within}),
            "keeps_beyond": len([e for e in summary.keeps_beyond_baseline if e in within]),
            "progression": kept, "left_behind": "no process left behind" not in done.stdout}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--seconds", type=float, default=180, help="how long each demo runs")
    parser.add_argument("--budget", type=int, default=15, help="training seconds per experiment")
    parser.add_argument("--agents", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="one sandbox for every seed")
    args = parser.parse_args()
    print(f"cores={os.cpu_count()} budget={args.budget}s agents={args.agents} window={args.seconds:.0f}s "
          f"{'one reused sandbox' if args.reuse else 'fresh sandbox per seed'}")
    print(f"{'seed':>4} {'load':>5} {'first_s':>8} {'finished':>8} {'agents':>6} {'keeps>base':>10}  "
          "kept val_bpb, in order")
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        for seed in args.seeds:
            root = Path(tmp) / ("demo" if args.reuse else f"demo-{seed}")
            r = run_seed(root, seed, args.seconds, args.budget, args.agents)
            first = "-" if r["first_s"] is None else f"{r['first_s']:.0f}"
            trail = " > ".join(f"{v:.4f}" for v in r["progression"])
            left = "  (PROCESSES LEFT BEHIND)" if r["left_behind"] else ""
            print(f"{r['seed']:>4} {r['load']:>5.1f} {first:>8} {r['finished']:>8} {r['agents']:>6} "
                  f"{r['keeps_beyond']:>10}  {trail}{left}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
