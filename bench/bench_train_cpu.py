"""Benchmark: train.py's steps/s and tok/s on CPU at smoke scale.

Usage:
    python bench/bench_train_cpu.py                          # TIME_BUDGET=20 s, torch's default thread count
    python bench/bench_train_cpu.py --time-budget 60 --threads 1

Builds a synthetic corpus in a temporary directory, runs `prepare.py --source` on it, runs a copy of
train.py with the smoke-scale constants (tests/corehelpers.py: SMOKE_CONSTANTS, SMOKE_ENV) and prints
figures parsed from train.py's own step lines and summary. The load average is printed too: on a
shared machine, other processes change these numbers a lot.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from corehelpers import (
    SMOKE_CONSTANTS,
    parse_step_lines,
    parse_summary,
    run_script,
    script_env,
    write_corpus,
    write_scripts,
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time-budget", type=int, default=20, help="AUTORESEARCH_TIME_BUDGET in seconds")
    parser.add_argument("--threads", type=int, help="OMP_NUM_THREADS for train.py (default: torch's choice)")
    parser.add_argument("--docs", type=int, default=1500, help="documents in the synthetic corpus")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-train-cpu-") as tmp:
        root = Path(tmp)
        train = write_scripts(root / "run", SMOKE_CONSTANTS)
        env = script_env(root / "cache", AUTORESEARCH_TIME_BUDGET=str(args.time_budget))
        env.pop("OMP_NUM_THREADS")
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        load_before = os.getloadavg()[0]

        t0 = time.time()
        corpus = write_corpus(root / "corpus", args.docs)
        prepared = run_script(train.parent / "prepare.py", env, "--source", str(corpus), "--num-shards", "4")
        prepare_s = time.time() - t0
        if prepared.returncode != 0:
            print(prepared.stdout, prepared.stderr, sep="\n")
            return 1
        t0 = time.time()
        trained = run_script(train, env)
        train_s = time.time() - t0
        if trained.returncode != 0 or "\n---\n" not in trained.stdout:
            print(trained.stdout[-3000:], trained.stderr[-3000:], sep="\n")
            return 1

    summary = parse_summary(trained.stdout)
    steps = parse_step_lines(trained.stdout)
    timed = steps[1:] or steps  # step 0 (allocation warmup) is outside the time budget on CPU
    training_s = float(summary["training_seconds"])
    grad_accum = int(trained.stdout.split("Gradient accumulation steps: ", 1)[1].split()[0])
    tokens_per_step = int(SMOKE_CONSTANTS["DEVICE_BATCH_SIZE"]) * int(summary["max_seq_len"]) * grad_accum
    dts = [float(s["dt"].removesuffix("ms")) for s in timed]
    tok_secs = [int(s["tok/sec"].replace(",", "")) for s in timed]

    print(f"config:            {', '.join(f'{k}={v}' for k, v in SMOKE_CONSTANTS.items())}, "
          f"MAX_SEQ_LEN={summary['max_seq_len']}, VOCAB_SIZE={summary['vocab_size']}")
    print(f"device:            {summary['device']} ({summary['device_name']}), "
          f"threads={args.threads or 'default'}, "
          f"cores={os.cpu_count()}, load avg {load_before:.1f} -> {os.getloadavg()[0]:.1f}")
    print(f"prepare_seconds:   {prepare_s:.1f}")
    print(f"train_wall_s:      {train_s:.1f} (total_seconds {summary['total_seconds']}, "
          f"budget {summary['time_budget']})")
    print(f"num_steps:         {summary['num_steps']} ({summary['num_params_M']}M params, "
          f"{tokens_per_step:,.0f} tokens/step)")
    print(f"steps_per_s:       {len(timed) / training_s:.2f}")
    print(f"tok_per_s:         {len(timed) * tokens_per_step / training_s:,.0f}")
    print(f"median_step_ms:    {statistics.median(dts):.0f}")
    print(f"median_tok_per_s:  {statistics.median(tok_secs):,.0f}")
    print(f"val_bpb:           {summary['val_bpb']}")
    print(f"peak_rss_mb:       {summary['peak_vram_mb']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
