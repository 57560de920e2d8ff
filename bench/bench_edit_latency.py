"""Benchmark: change-to-screen latency of a train.py edit in an agent's worktree.

Usage:
    .venv/bin/python bench/bench_edit_latency.py                    # 8 agents, 40 edits, both modes
    .venv/bin/python bench/bench_edit_latency.py --mode tmux --samples 100

Measured from just before train.py is written to the moment the agents panel shows the new diff
stat (`+1 −0`, then `clean` again): headless, as a Pilot test sees the panel's cell (polled every
2 ms, before the frame is painted); in tmux, the real `cockpit` in a pane of a private tmux
server, read with capture-pane (polled every 10 ms: each figure includes up to one poll interval
and a capture). The path: watchfiles (inotify, 50 ms quiet step, 200 ms debounce cap) -> the
watch thread runs `git diff --numstat` -> a message -> the panel's cell. Edits alternate between
adding a line and restoring the file, each in the next agent's worktree, 0.3 s apart.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from app.agents import panes  # noqa: E402
from app.ledger.store import Ledger  # noqa: E402
from gitrepo import make_repo  # noqa: E402
from runnerhelpers import agent_worktree  # noqa: E402

PAUSE_S = 0.3  # between edits, so each is its own debounce group
TIMEOUT_S = 10.0  # an edit not on screen by then counts as lost
ADDED = "+1 −0"  # what the panel shows after the added line


def make_agents(root: Path, count: int) -> tuple[Path, list[tuple[str, Path]]]:
    """A repository with `count` agents (worktree + ledger row each, no pane); the ledger path."""
    main = make_repo(root / "repo")
    ledger_path = main / ".autoresearch" / "ledger.db"
    agents = []
    with Ledger(ledger_path) as ledger:
        for i in range(count):
            name = f"agent{i}"
            worktree = agent_worktree(main, name, tag="bench")
            ledger.upsert_agent(name, actor="bench", tag="bench", branch=f"autoresearch/bench-{name}",
                                worktree=str(worktree), command="vanilla", state="running")
            agents.append((name, worktree))
    return ledger_path, agents


class Editor:
    """Alternately adds a line to and restores each agent's train.py; says what should show."""

    def __init__(self, agents: list[tuple[str, Path]]) -> None:
        self.agents = agents
        self.original = {name: (wt / "train.py").read_text() for name, wt in agents}
        self.dirty: set[str] = set()
        self.count = 0

    def next(self) -> tuple[str, str, float]:
        """Make the next edit; (agent, the text its edits cell will show, when it was written)."""
        name, worktree = self.agents[self.count % len(self.agents)]
        self.count += 1
        text = self.original[name] if name in self.dirty else self.original[name] + f"# edit {self.count}\n"
        expected = "clean" if name in self.dirty else ADDED
        self.dirty ^= {name}
        started = time.perf_counter()
        (worktree / "train.py").write_text(text)
        return name, expected, started

    def restore(self) -> None:
        for name, worktree in self.agents:
            (worktree / "train.py").write_text(self.original[name])


def summary(label: str, samples: list[float], lost: int) -> None:
    ms = sorted(s * 1000 for s in samples)
    if not ms:
        print(f"{label:<9} no sample reached the screen ({lost} lost)")
        return
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(f"{label:<9} n={len(ms)}  p50 {statistics.median(ms):6.1f} ms  p90 "
          f"{ms[round(0.9 * (len(ms) - 1))]:6.1f} ms  p99 {p99:6.1f} ms  max {ms[-1]:6.1f} ms  "
          f"mean {statistics.fmean(ms):6.1f} ms" + (f"  ({lost} lost)" if lost else ""))


# ---------------------------------------------------------------------------
# Headless: Pilot

async def headless(ledger_path: Path, agents: list[tuple[str, Path]],
                   samples: int) -> tuple[list[float], int]:
    from app.tui.app import make_app

    app = make_app(ledger_path)
    results, lost = [], 0
    async with app.run_test(size=(120, 40)) as pilot:
        def cell(name: str) -> str | None:
            table = app.dashboard.query_one("#agents-table")
            keys = {row.key.value for row in table.ordered_rows}
            return table.get_cell(name, "edits").plain if name in keys else None

        async def wait(check: Callable[[], bool]) -> float | None:
            deadline = time.perf_counter() + TIMEOUT_S
            while time.perf_counter() < deadline:
                if check():
                    return time.perf_counter()
                await pilot.pause(0.002)
            return None

        if await wait(lambda: all(cell(name) == "clean" for name, _ in agents)) is None:
            raise SystemExit("headless: the agents' diff stats never appeared")
        await pilot.pause(1.0)
        editor = Editor(agents)
        try:
            for _ in range(samples):
                name, expected, started = editor.next()
                seen = await wait(lambda name=name, expected=expected: cell(name) == expected)
                if seen is None:
                    lost += 1
                else:
                    results.append(seen - started)
                await pilot.pause(PAUSE_S)
        finally:
            editor.restore()
    return results, lost


# ---------------------------------------------------------------------------
# In tmux: the real cockpit

def in_tmux(ledger_path: Path, agents: list[tuple[str, Path]], samples: int) -> tuple[list[float], int]:
    socket = f"cockpit-bench-edit-{uuid.uuid4().hex[:10]}"
    env = {"PYTHONPATH": str(REPO)}
    command = f"{sys.executable} -m app.cli --ledger {ledger_path}"
    pane = panes.ensure_session("bench", command, ledger_path.parent, env, size=(120, 40),
                                socket=socket).pane_id

    def row(name: str) -> str:
        for line in panes.capture(pane, 40, socket).splitlines():
            if line.split()[:1] == [name]:
                return line
        return ""

    def wait(check: Callable[[], bool]) -> float | None:
        deadline = time.perf_counter() + TIMEOUT_S
        while time.perf_counter() < deadline:
            if check():
                return time.perf_counter()
            time.sleep(0.01)
        return None

    results, lost = [], 0
    try:
        if wait(lambda: all("clean" in row(name) for name, _ in agents)) is None:
            raise SystemExit("tmux: the cockpit never showed the agents; its pane shows:\n"
                             + panes.capture(pane, 40, socket))
        time.sleep(1.0)
        editor = Editor(agents)
        try:
            for _ in range(samples):
                name, expected, started = editor.next()
                seen = wait(lambda name=name, expected=expected: expected in row(name))
                if seen is None:
                    lost += 1
                else:
                    results.append(seen - started)
                time.sleep(PAUSE_S)
        finally:
            editor.restore()
    finally:
        panes.kill_server(socket)
    return results, lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=8, help="agents (worktrees) watched")
    parser.add_argument("--samples", type=int, default=40, help="edits measured per mode")
    parser.add_argument("--mode", choices=("both", "headless", "tmux"), default="both")
    args = parser.parse_args()
    for name in ("TMUX", "TMUX_PANE"):
        os.environ.pop(name, None)
    print(f"{args.agents} agents, {args.samples} edits per mode; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-edit-latency-") as tmp:
        ledger_path, agents = make_agents(Path(tmp), args.agents)
        if args.mode in ("both", "headless"):
            summary("headless", *asyncio.run(headless(ledger_path, agents, args.samples)))
        if args.mode in ("both", "tmux"):
            if shutil.which("tmux") is None:
                print("tmux       not installed: skipped")
            else:
                summary("tmux", *in_tmux(ledger_path, agents, args.samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())
