"""`cockpit run`: measure the worktree's HEAD, record it, decide, and tell the agent what to do."""
from __future__ import annotations

import argparse
from pathlib import Path

from app.actions import reap_lost
from app.commands import add_json_flag, here, ledger_path, print_json, say
from app.config import load_settings
from app.ledger.store import Ledger
from app.policy import CATEGORIES
from app.roles import Identity, RoleError, identify, require_human
from app.run.backends import BACKENDS
from app.run.plan import RunRequest, locate, plan_run
from app.run.report import format_block
from app.run.runner import Runner, exit_status


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run", help="run train.py at HEAD as one recorded, decided experiment",
        description="Run the worktree's committed train.py, stream it into the ledger, decide "
                    "keep/discard/crash and print the git action to take.")
    p.add_argument("-m", "--description", required=True, help="what this experiment changes")
    p.add_argument("--hypothesis", default="", help="why it should lower val_bpb")
    p.add_argument("--category", default="",
                   help=f"kind of change: {', '.join(CATEGORIES)} (free text accepted)")
    p.add_argument("--tag", help="run tag (default: $COCKPIT_TAG, the agent's, or from the branch)")
    p.add_argument("--agent", help="agent name (default: $COCKPIT_AGENT or the worktree's folder)")
    p.add_argument("--backend", choices=BACKENDS, help="where to train (default: settings)")
    p.add_argument("--repeat", action="store_true",
                   help="rerun HEAD to measure noise: never moves the best, never resets")
    p.add_argument("--allow-prepare-change", action="store_true",
                   help="run although prepare.py differs from main's (flagged, never compared)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="hard limit (default: timeout_factor x the time budget)")
    p.add_argument("--review", choices=("auto", "gate"),
                   help="gate: a keep waits for `cockpit approve/reject` (default: settings)")
    p.add_argument("--worktree", type=Path, help="the worktree to run (default: the current folder)")
    add_json_flag(p)
    p.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace) -> int:
    worktree, main = locate(args.worktree or here())
    settings = load_settings(main)
    request = RunRequest(
        description=args.description, worktree=worktree, hypothesis=args.hypothesis,
        category=args.category, tag=args.tag, agent=args.agent, backend=args.backend,
        review=args.review, repeat=args.repeat, allow_prepare_change=args.allow_prepare_change,
        timeout_s=args.timeout)
    with Ledger(ledger_path(args, worktree)) as ledger:
        reap_lost(ledger)
        check_run_role(identify(ledger, worktree), args, settings.review)
        plan = plan_run(request, ledger, worktree, main, settings)
        runner = Runner(plan, ledger, announce=lambda text: say(text, err=True))
        result = runner.run()
    if args.json:
        print_json(result.to_json())
    else:
        say(format_block(result))
    return exit_status(runner.signal_received)


def check_run_role(who: Identity, args: argparse.Namespace, configured_review: str) -> None:
    """An agent cannot relax the review gate, nor run under another agent's name."""
    if args.review == "auto" and configured_review == "gate":
        require_human(who, "--review auto (the settings say review = \"gate\")")
    if who.is_agent and args.agent and args.agent != who.agent:
        raise RoleError(f"agent {who.agent!r} cannot run as {args.agent!r} ({who.why})")
