"""`cockpit log FILE`: browse any log (a run.log, a log copied from another machine) in the TUI's
log viewer: every `\\r` progress step, search with a match count, go-to-line, traceback, follow."""
from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path

from app.commands import CommandError
from app.errors import EXIT_INFRA


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("log", help="browse a log file in the log viewer (like `tl FILE`)")
    p.add_argument("file", metavar="FILE", help="the log to show (any size; it is never read whole)")
    p.add_argument("-f", "--follow", action="store_true", help="keep showing lines appended to it")
    p.set_defaults(handler=log_command)


def checked_log(name: str) -> Path:
    """The file to show, or a one-line refusal: missing, a directory, a device, unreadable."""
    path = Path(name)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise CommandError(f"no such file: {name}") from None
    if not stat.S_ISREG(mode):
        raise CommandError(f"not a regular file: {name}")
    if not os.access(path, os.R_OK):
        raise CommandError(f"cannot read {name}: permission denied")
    return path


def log_command(args: argparse.Namespace) -> int:
    path = checked_log(args.file)
    try:
        from app.tui import launch_log
    except ModuleNotFoundError as exc:
        raise CommandError("the cockpit TUI is not available in this install (no app.tui)",
                           EXIT_INFRA) from exc
    return launch_log(path, follow=args.follow)
