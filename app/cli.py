"""The `cockpit` command: the run ledger's CLI, and the TUI when called without a subcommand.

Usage:
    cockpit                                  # the TUI on this repository's ledger
    cockpit run -m "what I changed" --hypothesis "why" --category optimizer
    cockpit history --json | cockpit suggest | cockpit note "lesson" --exp 12
    cockpit log run.log                      # the log viewer on any file

Exit statuses: 0 ok (whatever an experiment's decision), 2 usage or refusal, 3 infrastructure.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from app.commands import CommandError, here, ledger_path, settings_for
from app.errors import EXIT_INFRA, CockpitError
from app.ledger.store import LEDGER_ERRORS, Ledger
from app.logs.textsafe import sanitize
from app.roles import identify

# One line per command module; each has register(subparsers).
COMMAND_MODULES = (
    "app.commands.run",
    "app.commands.query",
    "app.commands.review",
    "app.commands.tsvio",
    "app.commands.agent",
    "app.commands.demo",
    "app.commands.gpus",
    "app.commands.verify",
    "app.commands.log",
    "app.commands.supervise",
)

_OTHER_INFRA_ERRORS: tuple[type[Exception], ...] = (*LEDGER_ERRORS, OSError)  # SQLite, files, processes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cockpit",
        description="Supervise autoresearch agents: run, record and decide experiments. "
                    "Without a command, open the cockpit TUI.")
    parser.add_argument("--ledger", metavar="PATH",
                        help="ledger file (default: <main worktree>/.autoresearch/ledger.db, "
                             "or $COCKPIT_LEDGER)")
    parser.add_argument("--read-only", action="store_true",
                        help="TUI: look, never write (a ledger you cannot write)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def open_tui(args: argparse.Namespace) -> int:
    try:
        from app.tui import launch
    except ModuleNotFoundError as exc:
        if exc.name not in ("app.tui", "app.tui.launch"):
            raise
        raise CommandError("the cockpit TUI is not available in this install (no app.tui); "
                           "see `cockpit --help` for the commands", EXIT_INFRA) from exc
    path = ledger_path(args)
    read_only = args.read_only or _agent_is_asking(path)
    if not read_only:
        from app.commands.supervise import ensure_supervisor

        ensure_supervisor(path)
    result = launch(path, read_only, settings_for(here()))
    return int(result or 0)


def _agent_is_asking(path: Path | str) -> bool:
    """From an agent's environment the TUI only looks: its actions are a human's."""
    try:
        with Ledger(path, read_only=True) as ledger:
            who = identify(ledger)
    except LEDGER_ERRORS:
        who = identify(None)
    if who.is_agent:
        print(f"cockpit: opened read-only: agent {who.agent!r}'s environment ({who.why})",
              file=sys.stderr)
    return who.is_agent


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            return open_tui(args)
        return int(args.handler(args) or 0)
    except BrokenPipeError:  # `cockpit history --json | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except CockpitError as exc:
        return _fail(exc, exc.exit_code)
    except _OTHER_INFRA_ERRORS as exc:
        return _fail(exc, EXIT_INFRA)
    except KeyboardInterrupt:
        return 130


def _fail(exc: BaseException, code: int) -> int:
    text = sanitize(str(exc)).strip()  # messages may quote names and text from agents
    message = text.splitlines()[0] if text else type(exc).__name__
    print(f"cockpit: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
