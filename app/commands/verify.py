"""`cockpit verify`: recompute the event hash chain and find rows changed outside the cockpit."""
from __future__ import annotations

import argparse

from app.commands import add_json_flag, open_ledger, print_json, say
from app.ledger.chain import chain_head, event_count, verify

MAX_SHOWN = 50  # problems printed in the text form (JSON carries all)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify", help="check the ledger's event hash chain; report rows changed outside cockpit",
        description="Recompute every event's hash and check each experiment against the state its "
                    "latest event recorded. Exit status 0: nothing found; 1: tampering found.")
    add_json_flag(p)
    p.set_defaults(handler=verify_command)


def verify_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        problems = verify(ledger)
        head = chain_head(ledger)
        count = event_count(ledger)
    if args.json:
        print_json({"ok": not problems, "events": count, "head": {"id": head[0], "hash": head[1]},
                    "problems": [vars(p) for p in problems]})
    elif not problems:
        say(f"ledger verified: {count} events chained, every experiment matches its last event")
    else:
        say(f"ledger TAMPERED: {len(problems)} problem(s) found")
        for problem in problems[:MAX_SHOWN]:
            say(f"  {problem.message}")
        if len(problems) > MAX_SHOWN:
            say(f"  ... and {len(problems) - MAX_SHOWN} more (--json lists all)")
    return 1 if problems else 0
