"""Benchmark: `cockpit supervise` idle CPU with 8 agents (target <= 2% of one core), and the latency
from an event to its notification (and from a vanilla run's summary line to its record).

Usage:
    .venv/bin/python bench/bench_supervisor.py                 # 8 agents, 5 s warm-up, 30 s idle
    .venv/bin/python bench/bench_supervisor.py --agents 16 --idle 60

Builds a throwaway repository and creates the agents as `cockpit agent new` does (real worktrees and
branches, a private tmux server, `sleep` as each agent's command, so the supervisor captures real
panes). The cockpit TUI that `agent new` opens in the session's first pane is closed: only the
supervisor runs, as a real `cockpit supervise` process, with notify = [json://127.0.0.1:PORT] (a
loopback HTTP server in this process). Nothing changes during the idle window. Then: a new best is
recorded (latency until the HTTP server has the message), a review becomes pending (same), and a
vanilla agent's run.log gets its summary line (latency until the ledger has the finished run).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from app.agents import lifecycle as agents  # noqa: E402
from app.agents import panes  # noqa: E402
from app.ledger.store import Ledger  # noqa: E402
from app.supervisor import process  # noqa: E402
from gitrepo import make_repo  # noqa: E402

TARGET_PCT = 2.0  # % of one core the idle supervisor must stay under
STEP = ("\rstep {s:05d} ({p:.1f}%) | loss: 3.500000 | lrm: 1.00 | dt: 312ms | tok/sec: 52,480 | "
        "mfu: 0.0% | epoch: 1 | remaining: 259s    ")
SUMMARY = ("\n---\nval_bpb:          0.981234\ntraining_seconds: 300.1\ntotal_seconds:    325.9\n"
           "peak_vram_mb:     45060.2\nmfu_percent:      39.80\ntotal_tokens_M:   499.6\n"
           "num_steps:        953\nnum_params_M:     50.3\ndepth:            8\n")


class Inbox(ThreadingHTTPServer):
    """Loopback HTTP server: (arrival time, JSON body) of every POST."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, dict]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                inbox.arrived.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def seed(ledger: Ledger, names: list[str], count: int) -> None:
    """Finished experiments, all over two hours old: no new best is news when the supervisor starts."""
    rng = random.Random(0)
    old = time.time() - 3 * 3600
    for i in range(count):
        decision = rng.choice(("keep", "discard", "discard", "crash"))
        ledger.register(actor="bench", tag="bench", agent=names[i % len(names)],
                        description=f"experiment {i}", status="finished", decision=decision,
                        val_bpb=None if decision == "crash" else round(1.0 - 0.0001 * i, 6),
                        created_at=old - (count - i) * 60, finished_at=old - (count - i) * 60 + 30)


def wait(predicate, timeout: float = 30.0, step: float = 0.002) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic()
        time.sleep(step)
    return None


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def latencies(ledger_path: Path, inbox: Inbox, worktree: Path) -> list[tuple[str, float | None]]:
    out: list[tuple[str, float | None]] = []
    with Ledger(ledger_path) as ledger:
        best = ledger.best(tag="bench")
        assert best is not None and best.val_bpb is not None
        before = len(inbox.arrived)
        t0 = time.monotonic()
        ledger.register(actor="bench", tag="bench", agent="agent0", description="a new best",
                        status="finished", decision="keep", val_bpb=best.val_bpb - 0.001,
                        finished_at=time.time())
        got = wait(lambda: len(inbox.arrived) > before)
        out.append(("new best -> notification", None if got is None else got - t0))
        before = len(inbox.arrived)
        t0 = time.monotonic()
        ledger.register(actor="bench", tag="bench", agent="agent1", description="gate",
                        status="finished", decision="pending", review="pending", val_bpb=0.5,
                        finished_at=time.time())
        got = wait(lambda: len(inbox.arrived) > before)
        out.append(("review pending -> notification", None if got is None else got - t0))
        runlog = worktree / "run.log"
        runlog.write_text("".join(STEP.format(s=s, p=s / 10) for s in range(5)))
        wait(lambda: any(e.backend == "observed" for e in ledger.live()), 10)
        with open(runlog, "a") as f:
            f.write(SUMMARY)
        t0 = time.monotonic()
        got = wait(lambda: any(e.backend == "observed" and e.status == "finished"
                               for e in ledger.experiments(newest_first=True, limit=5)), step=0.01)
        out.append(("run.log summary -> recorded", None if got is None else got - t0))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=8, help="agents (worktrees + panes)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--experiments", type=int, default=200, help="finished experiments seeded")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        print("tmux is not installed: nothing to measure", file=sys.stderr)
        return 2
    socket = f"cockpit-bench-{uuid.uuid4().hex[:10]}"
    for name in ("TMUX", "TMUX_PANE"):
        os.environ.pop(name, None)
    os.environ["COCKPIT_SUPERVISOR"] = "off"  # the TUI in pane 0 must not start its own
    inbox = Inbox()
    supervisor: subprocess.Popen | None = None
    with tempfile.TemporaryDirectory(prefix="bench-supervisor-") as tmp:
        main_wt = make_repo(Path(tmp) / "repo")
        ledger_path = main_wt / ".autoresearch" / "ledger.db"
        try:
            names = [f"agent{i}" for i in range(args.agents)]
            with Ledger(ledger_path) as ledger:
                seed(ledger, names, args.experiments)
                created = [agents.create_agent(ledger, main_wt, name, command="sleep 3600",
                                               tag="bench", socket=socket) for name in names]
            first = panes.list_panes(created[0].session, socket)[0]
            panes.kill_pane(first.pane_id, socket)  # the cockpit TUI: not measured here
            url = f"json://127.0.0.1:{inbox.server_address[1]}"
            (main_wt / ".autoresearch" / "config.toml").write_text(
                f"notify = ['{url}']\nnotify_events = ['new-best', 'review']\n")
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            supervisor = subprocess.Popen([sys.executable, "-m", "app.cli", "--ledger", str(ledger_path),
                                           "supervise"], cwd=main_wt, env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait(lambda: process.running_pid(ledger_path) == supervisor.pid, 30) is None:
                print("the supervisor did not start")
                return 1
            proc = psutil.Process(supervisor.pid)
            time.sleep(args.warmup)
            c0, t0 = cpu_seconds(proc), time.monotonic()
            time.sleep(args.idle)
            c1, t1 = cpu_seconds(proc), time.monotonic()
            figures = latencies(ledger_path, inbox, Path(created[0].agent.worktree))
        finally:
            if supervisor is not None:
                supervisor.terminate()
                supervisor.wait(20)
            panes.kill_server(socket)
            inbox.shutdown()
    pct = 100.0 * (c1 - c0) / (t1 - t0)
    print(f"idle window        {t1 - t0:.1f} s after a {args.warmup:.0f} s warm-up; {args.agents} agents "
          f"with panes, {args.experiments} experiments; {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}")
    print(f"supervisor         {c1 - c0:.3f} s CPU = {pct:.2f}% of one core "
          f"(target <= {TARGET_PCT:.0f}%: {'ok' if pct <= TARGET_PCT else 'OVER'})")
    for what, seconds in figures:
        print(f"{what:<31}{'did not arrive' if seconds is None else f'{seconds * 1000:.0f} ms'}")
    return 0 if pct <= TARGET_PCT and all(s is not None for _, s in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
