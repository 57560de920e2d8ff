"""`cockpit demo`: build a sandbox, start search agents, watch them in the cockpit (or headless).

Usage:
    cockpit demo                              # sandbox in ~/.cache/autoresearch-cockpit/demo, 2 agents, TUI
    cockpit demo --no-tui --duration 180      # progress lines, stop after 3 minutes
    cockpit demo --stop                       # stop a demo left running with --keep
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from app.commands import CommandError
from app.commands.supervise import ensure_supervisor
from app.config import Settings, load_settings
from app.demo import sandbox as demo
from app.ledger.store import Experiment, Ledger
from app.ledger.vocabulary import is_kept
from app.supervisor import process as supervisor

POLL_S = 1.0
NOT_FINISHED = ("killed", "lost", None)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="a self-driving autoresearch sandbox: real CPU training, search agents, no GPU/LLM",
        description="Build a sandbox repository with smoke-scale prepare.py/train.py, train its "
                    "tokenizer on text already on this machine, start built-in search agents and "
                    "open the cockpit on its ledger.")
    p.add_argument("--dir", type=Path, help=f"the sandbox (default: {demo.default_dir()}); an "
                                            "existing demo there is reused")
    p.add_argument("--agents", type=int, default=2, help="search agents to start (1-8, default 2)")
    p.add_argument("--budget", type=int, metavar="SECONDS",
                   help=f"training time budget per experiment (default {demo.DEFAULT_BUDGET_S})")
    p.add_argument("--seed", type=int, help="makes the agents' choices reproducible (default: random)")
    p.add_argument("--no-tui", action="store_true", help="print progress lines instead of the cockpit")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="with --no-tui: stop after this long (default: until Ctrl-C)")
    p.add_argument("--keep", action="store_true", help="leave the agents running when the demo ends")
    p.add_argument("--no-tmux", action="store_true",
                   help="run the agents as background processes even where tmux exists")
    p.add_argument("--stop", action="store_true", help="stop the demo's agents and runs, then exit")
    p.set_defaults(handler=demo_command)


def say(text: str) -> None:
    print(f"demo: {text}", flush=True)


class _Stop(Exception):
    """SIGTERM / SIGHUP while the demo runs headless."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise _Stop()


def demo_command(args: argparse.Namespace) -> int:
    root = (args.dir or demo.default_dir()).expanduser().resolve()
    if args.stop:
        if demo.is_demo(root):
            with suppress(TimeoutError):  # stop_demo ends whatever still runs in the sandbox
                supervisor.stop(demo.Sandbox(root).ledger_path)
        report = demo.stop_demo(root) if demo.is_demo(root) else None
        if report is None:
            raise CommandError(f"{root} is not a demo sandbox: nothing to stop")
        for line in report.lines():
            say(line)
        return 1 if report.survivors else 0
    if not 1 <= args.agents <= len(demo.AGENT_NAMES):
        raise CommandError(f"--agents must be between 1 and {len(demo.AGENT_NAMES)}")
    if args.budget is not None and args.budget < 1:
        raise CommandError("--budget must be at least 1 second")
    seed = args.seed if args.seed is not None else random.randrange(10_000)
    t0 = time.time()
    try:
        sandbox = demo.build_sandbox(root, args.budget, say)
        demo.prepare_data(sandbox, say)
    except demo.DemoError as exc:
        raise CommandError(str(exc)) from exc
    tui = not args.no_tui and sys.stdout.isatty()
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    session, tui_answer = None, []
    try:
        say(f"seed {seed}; data ready after {time.time() - t0:.0f} s")
        ensure_supervisor(sandbox.ledger_path, sandbox.root)
        try:
            session = demo.start_agents(sandbox, args.agents, seed, say, use_tmux=not args.no_tmux,
                                        beside_me=tui and _in_tmux())
        except demo.DemoError as exc:
            raise CommandError(str(exc)) from exc
        if tui:
            tui_answer = _run_tui(sandbox, session, args.keep)
        else:
            watch(sandbox, session, t0, args.duration)
    except (KeyboardInterrupt, _Stop):
        say("interrupted")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if session is not None:
            _finish(sandbox, session, t0, args.keep, ask=tui, answered=tui_answer)
    return 0


def _in_tmux() -> bool:
    return bool(os.environ.get("TMUX"))


def _run_tui(sandbox: demo.Sandbox, session: demo.DemoSession,
             keep: bool) -> list[demo.StopReport | None]:
    """The cockpit on the sandbox's ledger. Unless --keep, quitting it asks whether to stop the
    demo: [the stop report], or [None] when told not to."""
    from app.tui import launch

    answers: list[demo.StopReport | None] = []
    hook: dict[str, Any] = {}
    if not keep:
        def on_quit(stop: bool) -> None:
            answers.append(demo.stop_demo(sandbox.root) if stop else None)

        hook = {"quit_question": f"Stop the demo's {len(session.agents)} agents and their runs?",
                "on_quit": on_quit}
    launch(sandbox.ledger_path, settings=cockpit_settings(sandbox.root, session), **hook)
    return answers


def cockpit_settings(root: Path, session: demo.DemoSession) -> Settings:
    """The sandbox's settings with the demo's tag: agents added with `n` join the demo's tag."""
    return replace(load_settings(root), tag=session.tag)


def _finish(sandbox: demo.Sandbox, session: demo.DemoSession, t0: float, keep: bool,
            ask: bool, answered: list[demo.StopReport | None]) -> None:
    summary = summarize(sandbox.ledger_path, session.tag, session.started_at)
    for line in summary.lines(t0):
        say(line)
    if keep or (answered and answered[0] is None) or (ask and not answered and not _confirm_stop()):
        say(f"the agents keep running; stop them with `cockpit demo --stop --dir {sandbox.root}`")
        return
    if not answered:
        say("stopping the agents and their runs...")
    stopped = answered[0] if answered and answered[0] is not None else demo.stop_demo(sandbox.root)
    for line in stopped.lines():
        say(line)
    for proc in session.processes:  # background agents are our children: reap them
        proc.poll()


def _confirm_stop() -> bool:
    try:
        answer = input("demo: stop the demo's agents and their runs? [Y/n] ")
    except (EOFError, KeyboardInterrupt):
        return True
    return answer.strip().lower() not in ("n", "no")


# ---------------------------------------------------------------------------
# Headless progress

@dataclass
class Summary:
    finished: list[Experiment]
    keeps_beyond_baseline: list[Experiment]
    started_at: float

    @property
    def first_finished_at(self) -> float | None:
        return min((e.finished_at for e in self.finished if e.finished_at), default=None)

    def lines(self, t0: float) -> list[str]:
        per_agent: dict[str, int] = {}
        for e in self.finished:
            per_agent[e.agent] = per_agent.get(e.agent, 0) + 1
        agents = ", ".join(f"{a} {n}" for a, n in sorted(per_agent.items())) or "none"
        first = self.first_finished_at
        kept = [(e.val_bpb, e.id, e) for e in self.finished if is_kept(e) and e.val_bpb is not None]
        best = min(kept, default=(None, None, None))[2]
        out = [f"{len(self.finished)} experiments finished ({agents}) in {time.time() - t0:.0f} s"
               + ("" if first is None else f"; the first after {first - t0:.0f} s"),
               f"{len(self.keeps_beyond_baseline)} keeps beyond the baselines"]
        if best is not None:
            out.append(f"best val_bpb {best.val_bpb:.6f} (#{best.id} {best.agent}: {best.description})")
        return out


def summarize(ledger_path: Path, tag: str, since: float) -> Summary:
    """Experiments of one demo session: finished ones, and keeps other than each branch's first."""
    with Ledger(ledger_path) as ledger:
        runs = [e for e in ledger.experiments(tag=tag) if e.created_at >= since - 1]
    finished = [e for e in runs if e.status == "finished" and e.decision not in NOT_FINISHED]
    first_keep: dict[str, int] = {}
    for e in finished:
        if is_kept(e):
            first_keep.setdefault(e.branch, e.id)
    beyond = [e for e in finished if is_kept(e) and first_keep.get(e.branch) != e.id]
    return Summary(finished, beyond, since)


def watch(sandbox: demo.Sandbox, session: demo.DemoSession, t0: float,
          duration: float | None) -> None:
    """Print each experiment as it finishes until `duration` has passed (or forever)."""
    shown: set[int] = set()
    deadline = None if duration is None else t0 + duration
    say("watching (Ctrl-C stops)" if deadline is None else
        f"watching until {duration:.0f} s after the start")
    while deadline is None or time.time() < deadline:
        for e in summarize(sandbox.ledger_path, session.tag, session.started_at).finished:
            if e.id not in shown:
                shown.add(e.id)
                delta = "" if e.delta is None else f" {e.delta:+.6f}"
                say(f"[{time.time() - t0:4.0f}s] #{e.id} {e.agent:<4} {e.decision:<8} "
                    f"{e.val_bpb_text}{delta}  {e.description}")
        if all(p.poll() is not None for p in session.processes) and session.processes:
            say("every agent has exited")
            return
        time.sleep(POLL_S)
