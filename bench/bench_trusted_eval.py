"""Benchmark: what the cockpit's own val_bpb costs on top of a run, at smoke scale on CPU.

Usage:
    python bench/bench_trusted_eval.py                    # TIME_BUDGET=10 s, 3 evaluations
    python bench/bench_trusted_eval.py --time-budget 30 --repeats 5

Builds a synthetic corpus, runs `prepare.py --source`, runs the smoke-scale train.py once with
COCKPIT_WEIGHTS_OUT set (so it hands its final weights over), then runs the trusted evaluator
(`python -m app.run.trusted_eval`, exactly as the runner does) on those weights several times and
prints its wall time, its own breakdown, and the overhead relative to the train.py run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from corehelpers import SMOKE_CONSTANTS, parse_summary, run_script, script_env, write_corpus, write_scripts  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-budget", type=int, default=10, help="AUTORESEARCH_TIME_BUDGET in seconds")
    parser.add_argument("--repeats", type=int, default=3, help="trusted evaluations to time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-trusted-eval-") as tmp:
        root = Path(tmp)
        train = write_scripts(root / "run", SMOKE_CONSTANTS)
        env = script_env(root / "cache", AUTORESEARCH_TIME_BUDGET=str(args.time_budget))
        prepared = run_script(train.parent / "prepare.py", env, "--source",
                              str(write_corpus(root / "corpus")), "--num-shards", "2")
        if prepared.returncode != 0:
            sys.exit(prepared.stdout + prepared.stderr)
        weights = root / "weights.pt"
        t0 = time.perf_counter()
        trained = run_script(train, {**env, "COCKPIT_WEIGHTS_OUT": str(weights)})
        train_wall = time.perf_counter() - t0
        if trained.returncode != 0 or not weights.is_file():
            sys.exit(trained.stdout[-2000:] + trained.stderr[-2000:])
        summary = parse_summary(trained.stdout)

        walls, breakdowns, result = [], [], {}
        for _ in range(args.repeats):
            out = root / "result.json"
            command = [sys.executable, "-m", "app.run.trusted_eval", "--prepare",
                       str(train.parent / "prepare.py"), "--train", str(train), "--weights",
                       str(weights), "--out", str(out)]
            t0 = time.perf_counter()
            done = subprocess.run(command, cwd=train.parent, capture_output=True, text=True, check=False,
                                  env={**env, "PYTHONPATH": str(ROOT)})
            walls.append(time.perf_counter() - t0)
            result = json.loads(out.read_text())
            if done.returncode != 0:
                sys.exit(f"evaluator failed: {result}\n{done.stdout}{done.stderr}")
            breakdowns.append(result["seconds"])

    wall = statistics.median(walls)
    parts = {k: statistics.median(b[k] for b in breakdowns) for k in breakdowns[0]}
    start = wall - sum(parts.values())
    print(f"smoke scale: {summary['num_params_M']}M params, eval_tokens {result['eval_tokens']:,}, "
          f"time budget {args.time_budget} s, load average {os.getloadavg()[0]:.1f}")
    print(f"train.py run (wall, incl. its own eval): {train_wall:.1f} s; "
          f"val_bpb printed {float(summary['val_bpb']):.6f}, measured {result['val_bpb']:.6f}")
    print(f"trusted evaluation (wall, median of {len(walls)}): {wall:.2f} s "
          f"[{', '.join(f'{w:.2f}' for w in walls)}]")
    print(f"  interpreter + imports {start:.2f} s, data {parts['data']:.2f} s, "
          f"model {parts['model']:.2f} s, causality probe {parts['probe']:.2f} s, "
          f"eval {parts['eval']:.2f} s")
    print(f"overhead per measured run: {100 * wall / train_wall:.0f}% of the train.py run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
