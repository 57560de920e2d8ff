"""Subcommands of `cockpit`: each module has `register(subparsers)` and sets `handler`.

Helpers here are what every command shares: opening the ledger (which also reaps lost runs),
printing text or JSON, and the errors that map to exit statuses. Text for the terminal goes
through `say`: descriptions, notes, names and log lines are written by agents and training runs,
so escape sequences in them are removed before they reach the human's terminal.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.actions import reap_lost
from app.config import Settings, load_settings
from app.errors import EXIT_USAGE, CockpitError
from app.git import GitError, main_worktree
from app.ledger.store import Ledger, find_ledger_path
from app.logs.textsafe import sanitize


class CommandError(CockpitError):
    """A command's own refusal: one line on stderr and an exit status (usage unless told)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = code

    @property
    def code(self) -> int:
        return self.exit_code


def here() -> Path:
    return Path(os.getcwd())


def main_or_none(start: Path) -> Path | None:
    """The main worktree of the repository around `start`, or None outside any repository."""
    try:
        return main_worktree(start)
    except GitError:
        return None


def settings_for(start: Path) -> Settings:
    return load_settings(main_or_none(start))


def ledger_path(args: argparse.Namespace, start: Path | None = None) -> Path:
    return find_ledger_path(start or here(), getattr(args, "ledger", None))


def open_ledger(args: argparse.Namespace, start: Path | None = None) -> Ledger:
    """The shared ledger, after marking runs whose runner died as lost."""
    ledger = Ledger(ledger_path(args, start), read_only=getattr(args, "read_only", False))
    reap_lost(ledger)
    return ledger


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def clean_json(value: Any) -> Any:
    """NaN and infinities are not JSON: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def say(text: str = "", *, err: bool = False) -> None:
    """Print text for a terminal, with escape sequences and control characters removed."""
    print(sanitize(text), file=sys.stderr if err else sys.stdout, flush=err)


def print_json(value: Any) -> None:
    json.dump(clean_json(value), sys.stdout, indent=2, default=str, allow_nan=False)
    sys.stdout.write("\n")


def stream_json_list(encoded: Iterable[str]) -> int:
    """Write a JSON array of already-encoded elements one at a time: memory stays flat."""
    out = sys.stdout
    out.write("[")
    count = 0
    for text in encoded:
        out.write(",\n" if count else "\n")
        out.write(text)
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def fmt_val(value: float | None) -> str:
    return "—" if value is None else f"{value:.6f}"


def fmt_delta(value: float | None) -> str:
    return "" if value is None else f"{value:+.6f}"


def one_line(text: str, width: int) -> str:
    text = " ".join(sanitize(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
