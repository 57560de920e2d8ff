"""Benchmark app/logs/parse.py: MB/s and peak RSS on the real 1.4 MB log and on a generated big log.

Usage:
    .venv/bin/python bench/bench_logparse.py          # real log + a generated 1 GB log
    .venv/bin/python bench/bench_logparse.py 100      # generated log of 100 MB instead

Each measurement runs in a fresh child process so its peak RSS is its own. Two modes:
`whole-file` (1 MiB chunks, only the latest step parsed: how the observer reads a finished log) and
`feed+records` (64 KiB chunks, every step record built: what the runner does live). RSS is
sampled every 50 ms while parsing: the range shows memory stays flat however big the log is; the
process peak also counts the interpreter's start-up and imports.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.logs.parse import ParseResult, StreamParser  # noqa: E402

REAL_LOG = REPO.parent / "shared/data/real-runs/moe-run-compute90.log"
DEFAULT_SIZE_MB = 1024  # size of the generated log
RUNNER_CHUNK = 64 * 1024  # bytes per feed() in the runner mode
RSS_SAMPLE_SECONDS = 0.05  # interval between two RSS samples while parsing

# ---------------------------------------------------------------------------
# Child: parse one file, report figures as JSON


class RssSampler(threading.Thread):
    """Sample this process's RSS every RSS_SAMPLE_SECONDS until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[int] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        process = psutil.Process()
        while not self.stopped.wait(RSS_SAMPLE_SECONDS):
            self.samples.append(process.memory_info().rss)


def parse_whole_file(path: Path) -> ParseResult:
    parser = StreamParser(keep_records=False)
    with open(path, "rb") as log:
        while chunk := log.read(1 << 20):
            parser.feed(chunk)
    return parser.finish()


def parse_like_the_runner(path: Path) -> ParseResult:
    parser = StreamParser()
    with open(path, "rb") as log:
        while chunk := log.read(RUNNER_CHUNK):
            parser.feed(chunk)
    return parser.finish()


def measure(path: Path, mode: str, repeats: int) -> dict[str, float]:
    rss_before = psutil.Process().memory_info().rss
    parse = parse_whole_file if mode == "whole-file" else parse_like_the_runner
    sampler = RssSampler()
    sampler.start()
    best, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = parse(path)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.process_time() - start_cpu)
    sampler.stopped.set()
    sampler.join()
    samples = sampler.samples or [rss_before]
    return {
        "mb_per_s": path.stat().st_size / 1e6 / best,
        "mb_per_cpu_s": path.stat().st_size / 1e6 / best_cpu,
        "seconds": best,
        "steps": result.num_step_records,
        "rss_before_mb": rss_before / 1e6,
        "rss_min_mb": min(samples) / 1e6,
        "rss_max_mb": max(samples) / 1e6,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3,  # KiB; includes imports
    }


# ---------------------------------------------------------------------------
# Parent: generate the big log, run children, print a table


def generate_log(path: Path, size_mb: int) -> None:
    """Write train.py-like output: startup lines, one `\\r` step line of `size_mb` MB, a summary."""
    target = size_mb * 1_000_000
    with open(path, "wb") as log:
        log.write(b"Vocab size: 8,192\nTime budget: 300s\n")
        step, written = 0, 0
        while written < target:
            batch = "".join(
                f"\rstep {s:05d} ({s % 1000 / 10:.1f}%) | loss: {3 + (s % 97) / 1000:.6f} | lrm: 1.00 "
                f"| dt: {160 + s % 9}ms | tok/sec: 1,59{s % 10},769 | mfu: 24.3% | epoch: 1 "
                f"| router_ent: 1.333 | load_cv: 0.056 | remaining: {s % 300}s    "
                for s in range(step, step + 10_000)
            ).encode()
            log.write(batch)
            written += len(batch)
            step += 10_000
        log.write(b"\nsome/file.py:1: UserWarning: done\n---\nval_bpb:          0.997900\n")
        log.write(f"num_steps:        {step}\ndepth:            8\n".encode())


def run_child(path: Path, mode: str, repeats: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), mode, str(repeats)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


def report(label: str, path: Path, repeats: int) -> None:
    size_mb = path.stat().st_size / 1e6
    for mode in ("whole-file", "feed+records"):
        figures = run_child(path, mode, repeats)
        print(
            f"{label:<24} {size_mb:>7.1f} MB  {mode:<12} {figures['mb_per_s']:>5.1f} MB/s "
            f"({figures['mb_per_cpu_s']:.1f} per CPU-s)  {figures['seconds']:>6.1f} s  "
            f"steps {figures['steps']:>9,}  RSS before {figures['rss_before_mb']:.0f} MB, "
            f"while parsing {figures['rss_min_mb']:.0f}-{figures['rss_max_mb']:.0f} MB, "
            f"process peak {figures['peak_rss_mb']:.0f} MB",
            flush=True,
        )


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SIZE_MB
    if REAL_LOG.exists():
        report(REAL_LOG.name, REAL_LOG, repeats=5)
    else:
        print(f"real log not found at {REAL_LOG}: skipped")
    tmp_dir = Path(tempfile.gettempdir())
    free_mb = shutil.disk_usage(tmp_dir).free / 1e6
    if free_mb < 2 * size_mb:
        print(f"only {free_mb:,.0f} MB free in {tmp_dir}: generating {int(free_mb / 4)} MB instead")
        size_mb = int(free_mb / 4)
    with tempfile.TemporaryDirectory(prefix="bench-logparse-") as tmp:
        big = Path(tmp) / "big.log"
        start = time.perf_counter()
        generate_log(big, size_mb)
        seconds = time.perf_counter() - start
        print(f"generated {big.stat().st_size / 1e6:,.0f} MB in {seconds:.1f} s", flush=True)
        report(f"generated ({size_mb} MB)", big, repeats=1)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(measure(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]))))
    else:
        main()
