"""Human actions from the shell: `note`, `approve`, `reject`, `kill` (app/actions.py)."""
from __future__ import annotations

import argparse
import os

from app import actions
from app.commands import add_json_flag, here, open_ledger, print_json, say, settings_for


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("note", help="leave a note (a memory) for agents and humans")
    p.add_argument("text", help="the note")
    p.add_argument("--exp", type=int, metavar="ID", help="the experiment it is about")
    p.add_argument("--author", help="who writes it (default: $COCKPIT_AGENT, else human)")
    add_json_flag(p)
    p.set_defaults(handler=note_command)
    for name, helptext in (("approve", "approve a pending keep-candidate (review gate)"),
                           ("reject", "reject a pending keep-candidate (the agent resets)"),
                           ("kill", "stop a running experiment (its runner stops it within 1 s)")):
        p = subparsers.add_parser(name, help=helptext)
        p.add_argument("id", type=int, metavar="ID", help="experiment id")
        add_json_flag(p)
        p.set_defaults(handler=action_command, action=name)


def note_command(args: argparse.Namespace) -> int:
    agent = os.environ.get("COCKPIT_AGENT", "")
    author = args.author or agent or "human"
    with open_ledger(args) as ledger:
        note_id = actions.add_note(ledger, args.text, exp_id=args.exp, actor=author, agent=agent)
    if args.json:
        print_json({"note_id": note_id, "experiment_id": args.exp, "author": author})
    else:
        say(f"note {note_id} saved" + (f" on #{args.exp}" if args.exp else ""))
    return 0


def action_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        if args.action == "kill":
            grace = settings_for(here()).kill_grace_s
            message = actions.request_kill(ledger, args.id, grace_s=grace)
        else:
            message = getattr(actions, args.action)(ledger, args.id)
        exp = ledger.get(args.id)
    if args.json:
        print_json({"id": exp.id, "action": args.action, "message": message,
                    "status": exp.status, "decision": exp.decision, "review": exp.review})
    else:
        say(message)
    return 0
