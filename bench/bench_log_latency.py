"""Benchmark: log write -> on screen latency in the live view while a writer emits 10k lines/s
(target p99 <= 100 ms), and whether the UI stays responsive meanwhile.

Usage:
    .venv/bin/python bench/bench_log_latency.py                  # 10k lines/s for 10 s
    .venv/bin/python bench/bench_log_latency.py --rate 20000 --seconds 5

The real `cockpit --ledger PATH` runs in a pseudo-terminal (120x40), following a running
experiment whose log this script appends to. Every line carries its write time (a monotonic
clock shared by both processes); a reader thread scans the bytes the cockpit writes to its
terminal and records, for each line that appears on screen, how long after its write it did.
With auto-scroll only the newest lines of each frame are ever drawn, so the figures describe the
lines a human can see. Then 3 s of `\\r` step segments alone (20 per second) measure the live
progress line. Writers are separate processes, so the measuring process is never slowed by
them. Before and during the flood the script presses `/` (the search box opens) and escape every
0.5 s and measures key -> visible reaction time.
"""
from __future__ import annotations

import argparse
import fcntl
import multiprocessing as mp
import os
import pty
import re
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.ledger.store import Ledger  # noqa: E402

COLS, ROWS = 120, 40
LINE = re.compile(rb"L(\d{19})E")  # a log line's write time, ns
PROGRESS = re.compile(rb"P(\d{19})Q")  # a progress segment's write time, ns
SEARCH_OPEN = b"description, hypothesis"  # placeholder of the search box (past the cursor)
PAD = "x" * 60  # log lines about as long as real ones


def build_ledger(root: Path) -> tuple[Path, Path]:
    log = root / "logs" / "1.log"
    log.parent.mkdir(parents=True)
    log.write_text("startup line\n")
    ledger_path = root / "ledger.db"
    me = psutil.Process()
    with Ledger(ledger_path) as ledger:  # a runner that is alive (this process): never reaped
        ledger.register(agent="bench", tag="bench", description="latency bench", status="running",
                        log_path=str(log), started_at=time.time(), heartbeat_at=time.time(),
                        runner_pid=me.pid, runner_start=me.create_time(), progress_pct=1.0)
    return ledger_path, log


class Screen:
    """Reads the cockpit's terminal output; records when markers and key reactions appear."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.lines: dict[int, float] = {}  # marker -> latency s
        self.progress: dict[int, float] = {}
        self.search_seen = threading.Event()
        self.bytes = 0
        self.painted = threading.Event()
        self._tail = b""

    def run(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            now = time.monotonic_ns()
            self.bytes += len(chunk)
            data = self._tail + chunk
            for pattern, seen in ((LINE, self.lines), (PROGRESS, self.progress)):
                for match in pattern.finditer(data):
                    stamp = int(match.group(1))
                    seen.setdefault(stamp, (now - stamp) / 1e9)
            if SEARCH_OPEN in data:
                self.search_seen.set()
            if b"latency bench" in data:
                self.painted.set()
            self._tail = data[-64:]


def write_lines(log: str, rate: int, seconds: float, written: mp.Value) -> None:
    """Child process: `rate` lines/s in 1 ms batches, each line stamped with its write time."""
    per_ms = max(1, rate // 1000)
    with open(log, "a") as out:
        out.write("\n")
        start = time.monotonic()
        count = 0
        while time.monotonic() - start < seconds:
            out.write("".join(f"L{time.monotonic_ns():019d}E {i} {PAD}\n" for i in range(per_ms)))
            out.flush()
            count += per_ms
            delay = start + count / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        written.value = count


def write_progress(log: str, per_second: int, seconds: float) -> None:
    """Child process: train.py-style `\\r` step segments only, each stamped with its write time."""
    with open(log, "a") as out:
        out.write("\n")
        for tick in range(int(per_second * seconds)):
            out.write(f"\rstep {tick:05d} ({tick / 10:.1f}%) | loss: 3.0 | P{time.monotonic_ns():019d}Q   ")
            out.flush()
            time.sleep(1 / per_second)
        out.write("\n")


def press_and_watch(master: int, screen: Screen, until: mp.Process) -> list[float]:
    """Every 0.5 s open the search box (`/`) and close it; seconds until it showed."""
    reactions = []
    while until.is_alive():
        time.sleep(0.5)
        screen.search_seen.clear()
        pressed = time.monotonic()
        os.write(master, b"/")
        if screen.search_seen.wait(5):
            reactions.append(time.monotonic() - pressed)
        time.sleep(0.2)
        os.write(master, b"\x1b")
    return reactions


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="log lines per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ledger_path, log = build_ledger(Path(tmp))
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLS), "LINES": str(ROWS)}
        cockpit = Path(sys.executable).with_name("cockpit")
        proc = subprocess.Popen([str(cockpit), "--ledger", str(ledger_path)], stdin=slave,
                                stdout=slave, stderr=slave, env=env, cwd=tmp, start_new_session=True)
        os.close(slave)
        screen = Screen(master)
        threading.Thread(target=screen.run, daemon=True).start()
        if not screen.painted.wait(60):
            proc.kill()
            raise SystemExit("the cockpit did not show the running experiment within 60 s")
        time.sleep(1.0)  # let the live view attach to the log
        idle = mp.Process(target=time.sleep, args=(3,))
        idle.start()
        idle_reactions = press_and_watch(master, screen, idle)
        written = mp.Value("q", 0)
        cpu_before = psutil.Process(proc.pid).cpu_times()
        child = mp.Process(target=write_lines, args=(str(log), args.rate, args.seconds, written))
        started = time.monotonic()
        child.start()
        reactions = press_and_watch(master, screen, child)
        child.join()
        elapsed = time.monotonic() - started
        cpu_after = psutil.Process(proc.pid).cpu_times()
        progress = mp.Process(target=write_progress, args=(str(log), 20, 3.0))
        progress.start()
        progress.join()
        time.sleep(0.5)
        os.write(master, b"q")
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        os.close(master)
    cpu = (cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system) / elapsed
    line_lat = list(screen.lines.values())
    print(f"writer: {written.value:,} lines in {elapsed:.1f} s = {written.value / elapsed:,.0f} lines/s; "
          f"terminal output {screen.bytes / elapsed / 1e6:.2f} MB/s; cockpit CPU {cpu:.0%} of a core")
    if line_lat:
        print(f"log line write -> on screen ({len(line_lat):,} lines seen): "
              f"p50 {statistics.median(line_lat) * 1000:.0f} ms, "
              f"p99 {percentile(line_lat, 0.99) * 1000:.0f} ms, "
              f"max {max(line_lat) * 1000:.0f} ms (target p99 <= 100 ms)")
    prog_lat = list(screen.progress.values())
    if prog_lat:
        print(f"progress segment -> live line ({len(prog_lat)} seen): "
              f"p50 {statistics.median(prog_lat) * 1000:.0f} ms, "
              f"p99 {percentile(prog_lat, 0.99) * 1000:.0f} ms")
    for label, values in (("idle", idle_reactions), ("under the log flood", reactions)):
        if values:
            print(f"key '/' -> search box on screen, {label} ({len(values)} presses): "
                  f"p50 {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms")
        else:
            print(f"key '/' -> search box, {label}: never seen (UI unresponsive?)")


if __name__ == "__main__":
    main()
