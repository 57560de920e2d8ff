"""`cockpit log FILE` side by side with toolong's `tl FILE` on the same generated log.

Both run as real processes in tmux (a private socket, a 120×40 window), measured the same way from
outside: the pane is captured every few ms until the expected text shows.

- first screen: launch → the log's first line on screen;
- end: End pressed → the log's last line on screen;
- search: from the top, search for a string that only the last line holds → that line on screen
  (cockpit: `/`, the text, Enter; toolong: `/`, the text, then ↓ to go to the next match);
- peak RSS: VmHWM of the viewer's process (/proc/PID/status) after all of the above.
A stage that does not show within BENCH_TIMEOUT_S (default 300 s) prints as "> N s"; the search is
"n/a" when Home never showed the top (it would not start from there).

toolong is installed by the benchmark itself into a temporary venv (`uv venv` + `uv pip install
toolong`, from PyPI). The log is generated in /tmp (bench_big_log.generate: `\\r` progress lines of
20,000 steps unless --steps-per-line, bursts of ordinary lines, a summary)
and deleted at the end unless --keep.

Usage:
    python bench/bench_log_viewer.py                  # 1024 MB
    python bench/bench_log_viewer.py --size-mb 256
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_big_log  # the sibling benchmark writes the log
from bench_big_log import LAST_LINE, NEEDLE, generate

REPO = Path(__file__).resolve().parents[1]
SIZE = (120, 40)
FIRST_LINE = "Vocab size: 8,192"
LOG_TEXT = (FIRST_LINE, "W0610 10:04:18", LAST_LINE)  # any of these: the log is on screen (tl opens at
# the end, tailing; cockpit log at the top)
POLL_S = 0.005
TIMEOUT_S = float(os.environ.get("BENCH_TIMEOUT_S", 300))  # per stage


class Pane:
    """One program in its own tmux server, at SIZE."""

    def __init__(self, name: str, command: str) -> None:
        self.socket = f"bench-log-{name}-{os.getpid()}"
        self.started = time.perf_counter()
        self._tmux("new-session", "-d", "-s", "bench", "-x", str(SIZE[0]), "-y", str(SIZE[1]),
                   f"exec {command}")
        self.pid = int(self._tmux("display-message", "-p", "-t", "bench", "#{pane_pid}").strip())

    def _tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", "bench")

    def keys(self, *keys: str, literal: bool = False) -> float:
        """Send keys; returns the time they were sent."""
        self._tmux("send-keys", "-t", "bench", *(["-l"] if literal else []), *keys)
        return time.perf_counter()

    def wait(self, shown: Callable[[str], bool], what: str) -> float:
        """The time at which the screen first satisfied `shown`; inf after TIMEOUT_S."""
        deadline = time.perf_counter() + TIMEOUT_S
        while time.perf_counter() < deadline:
            if shown(self.screen()):
                return time.perf_counter()
            time.sleep(POLL_S)
        print(f"{self.socket}: {what} not shown within {TIMEOUT_S:.0f} s", file=sys.stderr)
        return float("inf")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)
        tmpdir = os.environ.get("TMUX_TMPDIR", "/tmp")
        Path(tmpdir, f"tmux-{os.getuid()}", self.socket).unlink(missing_ok=True)


def measure(name: str, command: str, search_keys: list[str]) -> dict[str, float]:
    """Launch, first screen, End, Home, search, peak RSS, for one viewer."""
    pane = Pane(name, command)
    try:
        first = pane.wait(lambda s: any(text in s for text in LOG_TEXT), "the log") - pane.started
        sent = pane.keys("End")
        end = pane.wait(lambda s: LAST_LINE in s, "the last line") - sent
        pane.keys("Home")
        top = pane.wait(lambda s: FIRST_LINE in s and LAST_LINE not in s, "the top again")
        pane.keys("/")
        time.sleep(0.3)  # the search bar opens (not timed)
        pane.keys(NEEDLE, literal=True)
        pane.wait(lambda s: NEEDLE in s, "the typed search text")
        sent = pane.keys(*search_keys)
        search = pane.wait(lambda s: LAST_LINE in s, "the searched last line") - sent
        if top == float("inf"):
            search = float("nan")  # not searched from the top: no figure
        rss = pane.peak_rss_mb()
    finally:
        pane.close()
    return {"first screen ms": first * 1000, "end ms": end * 1000, "search ms": search * 1000,
            "peak RSS MB": rss}


def shown(figure: float) -> str:
    if figure != figure:  # nan
        return "n/a (no top)"
    return f"{figure:,.0f}" if figure < float("inf") else f"> {TIMEOUT_S:.0f} s"


def install_toolong(where: Path) -> Path:
    subprocess.run(["uv", "venv", "-q", str(where)], check=True)
    subprocess.run(["uv", "pip", "install", "-q", "--python", str(where / "bin" / "python"), "toolong"],
                   check=True)
    return where / "bin" / "tl"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--keep", action="store_true", help="keep the generated log")
    parser.add_argument("--steps-per-line", type=int, default=bench_big_log.SEGMENTS_PER_LINE,
                        help="`\\r` steps per physical progress line (train.py: a whole run's)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-log-viewer-", dir="/tmp"))
    log = work / "big.log"
    try:
        if shutil.disk_usage(work).free < args.size_mb * 2 << 20:
            print(f"not enough free space in /tmp for a {args.size_mb} MB log", file=sys.stderr)
            return 2
        bench_big_log.SEGMENTS_PER_LINE = args.steps_per_line
        size, seconds = generate(log, args.size_mb << 20)
        print(f"log: {log} {size / 2**20:,.0f} MB, generated in {seconds:.1f} s")
        tl = install_toolong(work / "toolong-venv")
        python = REPO / ".venv" / "bin" / "python"
        results = {
            "cockpit log": measure("cockpit", f"{python} -m app.cli log {log}", ["Enter"]),
            "tl (toolong)": measure("toolong", f"{tl} {log}", ["Down"]),
        }
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    keys = list(next(iter(results.values())))
    print(f"{'':16}" + "".join(f"{key:>18}" for key in keys))
    for name, figures in results.items():
        print(f"{name:16}" + "".join(f"{shown(figures[key]):>18}" for key in keys))
    return 0


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
