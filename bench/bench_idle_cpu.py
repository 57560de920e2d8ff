"""Benchmark: CPU used by the cockpit TUI while idle with 8 agents (target: well under 5% of one core).

Usage:
    .venv/bin/python bench/bench_idle_cpu.py           # 8 agents, 5 s warm-up once drawn, 30 s idle
    .venv/bin/python bench/bench_idle_cpu.py --agents 16 --idle 60 --experiments 500

Builds a throwaway autoresearch-shaped repository, creates the agents exactly as
`cockpit agent new NAME` does outside tmux (real worktrees and branches, a private tmux server,
`sleep` as each agent's command), so the real `cockpit --ledger ...` runs headless in the first
pane of the detached session beside them. The ledger is seeded with finished experiments. After
the warm-up, the CPU time of the cockpit process (and of any child it ran and reaped, e.g. git)
is sampled over the idle window with psutil; the tmux server's CPU is shown too, because pane
previews cost it work. Nothing changes during the window: this is the cost of sitting there.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from app.agents import lifecycle as agents  # noqa: E402
from app.agents import panes  # noqa: E402
from app.ledger.store import Ledger  # noqa: E402
from gitrepo import make_repo  # noqa: E402

TARGET_PCT = 5.0  # % of one core the idle cockpit must stay well under


def seed_experiments(ledger: Ledger, names: list[str], count: int, tag: str) -> None:
    """Finished experiments spread over the agents, so the dashboard has rows, a best and a plot."""
    rng = random.Random(0)
    now = time.time()
    for i in range(count):
        name = names[i % len(names)]
        val = 1.0 - 0.02 * (i / max(count, 1)) + rng.uniform(-0.004, 0.004)
        decision = rng.choice(("keep", "discard", "discard", "crash"))
        ledger.register(actor="bench", tag=tag, agent=name, branch=f"autoresearch/{tag}-{name}",
                        commit_sha=f"{i:07x}", description=f"experiment {i}", status="finished",
                        decision=decision, val_bpb=None if decision == "crash" else round(val, 6),
                        created_at=now - (count - i) * 60, finished_at=now - (count - i) * 60 + 300)


def cockpit_process(pane_pid: int, timeout: float = 20.0) -> psutil.Process | None:
    """The cockpit's Python process under pane 0's shell."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            for proc in [psutil.Process(pane_pid), *psutil.Process(pane_pid).children(recursive=True)]:
                cmdline = " ".join(proc.cmdline())
                if "--ledger" in cmdline and "python" in (proc.name() + cmdline):
                    return proc
        except psutil.NoSuchProcess:
            return None
        time.sleep(0.2)
    return None


def wait_for_screen(pane_id: str, socket: str, since: float, timeout: float = 60.0) -> float | None:
    """Seconds from `since` until the pane shows any text (the TUI has drawn), or None."""
    while time.monotonic() - since < timeout:
        if panes.capture(pane_id, 50, socket).strip():
            return time.monotonic() - since
        time.sleep(0.1)
    return None


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=8, help="agents (worktrees + panes)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds between the cockpit's first screen and the measurement")
    parser.add_argument("--experiments", type=int, default=200, help="finished experiments seeded")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is not installed: nothing to measure", file=sys.stderr)
        return 2

    socket = f"cockpit-bench-{uuid.uuid4().hex[:10]}"
    for name in ("TMUX", "TMUX_PANE"):  # measure the outside-tmux layout even when run inside tmux
        os.environ.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="bench-idle-cpu-") as tmp:
        main_wt = make_repo(Path(tmp) / "repo")
        ledger_path = main_wt / ".autoresearch" / "ledger.db"
        try:
            with Ledger(ledger_path) as ledger:
                names = [f"agent{i}" for i in range(args.agents)]
                seed_experiments(ledger, names, args.experiments, "bench")
                started = time.monotonic()
                created = [agents.create_agent(ledger, main_wt, name, command="sleep 3600", tag="bench",
                                               socket=socket) for name in names]
                print(f"{args.agents} agents created in {time.monotonic() - started:.1f} s "
                      f"(session {created[0].session}, tmux -L {socket})")
            first = panes.list_panes(created[0].session, socket)[0]
            cockpit = cockpit_process(first.pid)
            if cockpit is None:
                print("the cockpit did not start; pane 0 shows:\n" + panes.capture(first.pane_id, 30, socket))
                return 1
            shown = wait_for_screen(first.pane_id, socket, started)
            if shown is None:
                print("the cockpit drew nothing within 60 s; pane 0 shows:\n"
                      + panes.capture(first.pane_id, 30, socket))
                return 1
            print(f"cockpit on screen  {shown:.1f} s after `agent new` began")
            server = psutil.Process(int(subprocess.run(
                ["tmux", "-L", socket, "display-message", "-p", "#{pid}"], capture_output=True,
                text=True, check=True).stdout))
            time.sleep(args.warmup)
            if not cockpit.is_running():
                print("the cockpit exited during the warm-up; pane 0 shows:\n"
                      + panes.capture(first.pane_id, 30, socket))
                return 1
            c0, s0, t0 = cpu_seconds(cockpit), cpu_seconds(server), time.monotonic()
            time.sleep(args.idle)
            c1, s1, t1 = cpu_seconds(cockpit), cpu_seconds(server), time.monotonic()
            alive = cockpit.is_running()
        finally:
            panes.kill_server(socket)

    wall = t1 - t0
    cockpit_pct = 100.0 * (c1 - c0) / wall
    server_pct = 100.0 * (s1 - s0) / wall
    print(f"idle window        {wall:.1f} s after a {args.warmup:.0f} s warm-up; "
          f"{args.agents} agents, {args.experiments} experiments; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"cockpit process    {c1 - c0:.2f} s CPU = {cockpit_pct:.2f}% of one core "
          f"(target < {TARGET_PCT:.0f}%: {'ok' if cockpit_pct < TARGET_PCT else 'OVER'})"
          + ("" if alive else "  [the cockpit exited during the window]"))
    print(f"tmux server        {s1 - s0:.2f} s CPU = {server_pct:.2f}% of one core")
    return 0 if alive and cockpit_pct < TARGET_PCT else 1


if __name__ == "__main__":
    sys.exit(main())
