"""GPU check: which attention path train.py loads and why, FA3 vs FlexAttention vs SDPA numerics (forward
and backward, eager and compiled) and speed, then upstream's 5-minute configuration per attention path on
data that prepare.py --source builds from text already on the machine (the standard library's docstrings,
the demo's corpus). Prints figures; not a test. Without a usable CUDA GPU it stops with one line.

Usage:
    python bench/gpu_check.py                                  # everything, 300 s of training per path
    python bench/gpu_check.py --budget 60 --paths fa3,flex     # a short device session (~8 minutes)
    python bench/gpu_check.py --skip-train --out /tmp/gpu      # numerics and speed only; JSON in /tmp/gpu
Run it with the Python that has the GPU build of torch (pyproject's `gpu` extra). On a machine without the
kernel hub, AUTORESEARCH_FA3_DIR=<a kernel build fetched elsewhere> makes FA3 load (see the README).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

PATHS = ("fa3", "flex", "sdpa")
SHAPE = {"B": 2, "T": 2048, "H": 4, "KV": 4, "D": 128}  # upstream's model: 512 wide, 4 heads of 128
WINDOWS = (1024, 2048)  # upstream's S and L layers at MAX_SEQ_LEN 2048
SPEED_BATCH = 32  # rows per timed forward+backward
FAILURES = (RuntimeError, ValueError, TypeError, NotImplementedError, AssertionError)  # reported per path
UPSTREAM = ("upstream H100 reference: MFU 39.8 %, 953 steps in 300 s; a real upstream H100 log "
            "(shared/data/real-runs/forks/wavHub...run.log): 927 steps, val_bpb 0.996831 on climbmix")


def cuda_problem() -> str | None:
    """Why this machine cannot run the check (None: it can)."""
    try:
        import torch
    except ImportError as e:
        return f"torch is not installed ({e})"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (install pyproject's `gpu` extra)"
    if not torch.cuda.is_available():
        try:
            torch.cuda.init()
        except (RuntimeError, AssertionError) as e:
            return f"CUDA does not initialise ({' '.join(str(e).split())[:200]})"
        return "no CUDA device"
    return None


def train_defs() -> dict:
    """train.py's definitions up to its Setup banner (the attention choice runs and prints its reasons)."""
    from corehelpers import exec_until
    return exec_until(REPO / "train.py", "\n# Setup: tokenizer, model, optimizer, dataloader\n")


# ---------------------------------------------------------------------------
# Numerics and speed of the attention paths

def reference(q, k, v, window):
    """fp32 masked softmax: query i sees keys i - window ... i."""
    import torch
    q, k, v = q.float(), k.float(), v.float()
    groups = q.size(2) // k.size(2)
    k, v = k.repeat_interleave(groups, dim=2), v.repeat_interleave(groups, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(q.size(-1))
    pos = torch.arange(q.size(1), device=q.device)
    distance = pos[:, None] - pos[None, :]
    scores = scores.masked_fill(~((distance >= 0) & (distance <= window)), float("-inf"))
    return torch.einsum("bhij,bjhd->bihd", scores.softmax(-1), v)


def attention_paths(defs: dict) -> dict:
    paths = {"sdpa": defs["sdpa_attention_bthd"], "flex": defs["flex_attention_bthd"]}
    fa3, _ = defs["load_fa3"]()
    if fa3 is not None:
        def fa3_bthd(q, k, v, window):
            out = fa3.flash_attn_func(q, k, v, causal=True, window_size=(window, 0))
            return out[0] if isinstance(out, tuple) else out
        paths["fa3"] = fa3_bthd
    return paths


def forward_backward(fn, q, k, v, window, grad):
    q, k, v = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    out = fn(q, k, v, window)
    (out.float() * grad).sum().backward()
    return out.detach(), q.grad, k.grad, v.grad


def numerics(paths: dict) -> list[dict]:
    import torch
    rows = []
    g = torch.Generator(device="cuda").manual_seed(0)
    B, T, H, KV, D = (SHAPE[k] for k in ("B", "T", "H", "KV", "D"))
    for window in WINDOWS:
        q = torch.randn(B, T, H, D, device="cuda", generator=g).bfloat16()
        k = torch.randn(B, T, KV, D, device="cuda", generator=g).bfloat16()
        v = torch.randn(B, T, KV, D, device="cuda", generator=g).bfloat16()
        grad = torch.randn(B, T, H, D, device="cuda", generator=g)
        expected = forward_backward(reference, q, k, v, window, grad)
        for name, fn in paths.items():
            for mode in ("eager", "compiled"):
                run = fn if mode == "eager" else torch.compile(fn, dynamic=False)
                try:
                    got = forward_backward(run, q, k, v, window, grad)
                except FAILURES as e:
                    rows.append({"path": name, "mode": mode, "window": window,
                                 "error": f"{type(e).__name__}: {e}"[:300]})
                    continue
                diffs = [(a.float() - b.float()).abs().max().item() for a, b in zip(got, expected)]
                rows.append({"path": name, "mode": mode, "window": window, "out": diffs[0], "dq": diffs[1],
                             "dk": diffs[2], "dv": diffs[3]})
    return rows


def speed(paths: dict, iters: int = 20) -> list[dict]:
    import torch
    rows = []
    B, T, H, KV, D = SPEED_BATCH, SHAPE["T"], SHAPE["H"], SHAPE["KV"], SHAPE["D"]
    for window in WINDOWS:
        q, k, v = (torch.randn(B, T, n, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
                   for n in (H, KV, KV))
        for name, fn in paths.items():
            run = torch.compile(fn, dynamic=False)
            try:
                for _ in range(3):
                    run(q, k, v, window).sum().backward()
                torch.cuda.synchronize()
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(iters):
                    run(q, k, v, window).sum().backward()
                end.record()
                torch.cuda.synchronize()
            except FAILURES as e:
                rows.append({"path": name, "window": window, "error": f"{type(e).__name__}: {e}"[:300]})
                continue
            ms = start.elapsed_time(end) / iters
            pairs = B * H * sum(min(i, window) + 1 for i in range(T))  # attended (query, key) pairs
            tflops = 3.5 * 4 * pairs * D / (ms / 1e3) / 1e12  # fwd 4*pairs*D flops, fwd+bwd ~3.5x
            rows.append({"path": name, "window": window, "ms": ms, "tflops": tflops})
    return rows


# ---------------------------------------------------------------------------
# Upstream's 5-minute configuration per attention path

def prepare_data(workdir: Path, corpus_chars: int, log) -> dict[str, str]:
    from app.demo.corpus import write_corpus
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    env.update(AUTORESEARCH_CACHE=str(workdir / "cache"), PYTHONUNBUFFERED="1")
    stats = write_corpus(workdir / "corpus.jsonl", max_chars=corpus_chars)
    log(f"corpus: {stats.documents:,} documents, {stats.chars / 1e6:.1f}M characters of stdlib docstrings")
    started = time.time()
    command = [sys.executable, str(REPO / "prepare.py"), "--source", str(stats.path), "--num-shards", "8"]
    done = subprocess.run(command,
                          env=env, capture_output=True, text=True, check=False)
    warnings = [line for line in done.stdout.splitlines() if line.startswith("WARNING")]
    log(f"prepare.py --source: exit {done.returncode} in {time.time() - started:.0f} s"
        + "".join(f"\n  {w}" for w in warnings))
    if done.returncode:
        last = (done.stderr or done.stdout or "no output").strip().splitlines()[-1]
        raise SystemExit(f"gpu_check: prepare.py failed: {last}")
    return env


def train_run(path: str, budget: int, env: dict[str, str], workdir: Path, log) -> dict:
    from app.logs.parse import StreamParser
    run_dir = workdir / f"run-{path}"
    run_dir.mkdir(exist_ok=True)
    for name in ("train.py", "prepare.py"):
        shutil.copyfile(REPO / name, run_dir / name)
    log_path = workdir / f"train-{path}.log"
    started = time.time()
    with open(log_path, "wb") as out:
        done = subprocess.run([sys.executable, "train.py"], cwd=run_dir, stdout=out, stderr=subprocess.STDOUT,
                              env={**env, "AUTORESEARCH_ATTENTION": path,
                                   "AUTORESEARCH_TIME_BUDGET": str(budget)},
                              timeout=2 * budget + 900, check=False)
    parser = StreamParser(keep_records=False)
    parser.feed(log_path.read_bytes())
    parsed = parser.finish()
    summary = parsed.summary or {}
    row = {"path": path, "exit_code": done.returncode, "wall_s": round(time.time() - started, 1),
           "log": str(log_path)}
    if done.returncode or not summary.get("val_bpb"):
        row["error"] = (parsed.tail or ["no output"])[-1]
        return row
    seconds = summary.get("training_seconds") or 0
    row.update({"attention": summary.get("attention"), "device_name": summary.get("device_name"),
                "steps": summary.get("num_steps"), "training_seconds": seconds,
                "mfu": summary.get("mfu_percent"),
                "peak_vram_mb": summary.get("peak_vram_mb"), "val_bpb": summary.get("val_bpb"),
                "tok_per_s": round(summary["total_tokens_M"] * 1e6 / seconds) if seconds else None})
    return row


# ---------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=int, default=300, help="training seconds per path (upstream: 300)")
    parser.add_argument("--paths", default=",".join(PATHS), help="attention paths to train, e.g. fa3,flex")
    parser.add_argument("--corpus-chars", type=int, default=8_000_000, help="text characters for prepare.py")
    parser.add_argument("--skip-numerics", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--out", type=Path, help="write gpu_check.json and the training logs here")
    args = parser.parse_args()
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if unknown := set(paths) - set(PATHS):
        parser.error(f"--paths: unknown {', '.join(sorted(unknown))} (use {', '.join(PATHS)})")
    if problem := cuda_problem():
        sys.exit(f"gpu_check: no usable GPU here: {problem}")

    import torch
    out = args.out or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {"torch": torch.__version__, "cuda": torch.version.cuda,
                     "device": torch.cuda.get_device_name(), "capability": torch.cuda.get_device_capability()}
    try:
        import kernels
        results["kernels"] = kernels.__version__
    except ImportError:
        results["kernels"] = None

    def log(text: str) -> None:
        print(text, flush=True)

    log(f"== environment: torch {results['torch']} (CUDA {results['cuda']}), kernels {results['kernels']}, "
        f"{results['device']} sm_{''.join(map(str, results['capability']))}")
    log("== attention path train.py chooses (its own reason lines above the choice):")
    defs = train_defs()
    fa3, reason = defs["load_fa3"]()
    results["attention"] = {"chosen": defs["ATTENTION"], "fa3": "loads" if fa3 is not None else reason}
    log(f"chosen: {defs['ATTENTION']}; FA3: {results['attention']['fa3']}")

    if not args.skip_numerics:
        available = attention_paths(defs)
        log(f"== numerics vs an fp32 masked-softmax reference (bf16 inputs, B={SHAPE['B']} T={SHAPE['T']} "
            f"H={SHAPE['H']} D={SHAPE['D']}): max abs difference")
        results["numerics"] = numerics(available)
        for r in results["numerics"]:
            figures = r.get("error") or "  ".join(f"{k} {r[k]:.2e}" for k in ("out", "dq", "dk", "dv"))
            log(f"  {r['path']:<5} {r['mode']:<8} window {r['window']:>4}: {figures}")
        log(f"== speed, compiled forward+backward (B={SPEED_BATCH} T={SHAPE['T']} H={SHAPE['H']} "
            f"D={SHAPE['D']})")
        results["speed"] = speed(available)
        for r in results["speed"]:
            figures = r.get("error") or f"{r['ms']:.2f} ms  {r['tflops']:.0f} TFLOP/s"
            log(f"  {r['path']:<5} window {r['window']:>4}: {figures}")

    if not args.skip_train:
        log(f"== upstream's configuration, {args.budget} s per path, data from prepare.py --source "
            f"(in {out})")
        env = prepare_data(out, args.corpus_chars, log)
        results["train"] = []
        for path in paths:
            row = train_run(path, args.budget, env, out, log)
            results["train"].append(row)
            if "error" in row:
                log(f"  {path:<5} exit {row['exit_code']}: {row['error']}")
            else:
                log(f"  {path:<5} {row['steps']} steps in {row['training_seconds']} s, "
                    f"{row['tok_per_s']:,} tok/s, "
                    f"MFU {row['mfu']} %, peak {row['peak_vram_mb']} MB, val_bpb {row['val_bpb']} "
                    f"(attention {row['attention']}, {row['wall_s']} s wall)")
        log(UPSTREAM + "; val_bpb here is on stdlib docstrings, not comparable with climbmix")
    (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    log(f"== written: {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
