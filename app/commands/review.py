"""Human actions from the shell: `note`, `approve`, `reject`, `kill` (app/actions.py)."""
from __future__ import annotations

import argparse

from app import actions
from app.commands import add_json_flag, here, open_ledger, print_json, say, settings_for
from app.roles import RoleError, identify, require_human


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("note", help="leave a note (a memory) for agents and humans")
    p.add_argument("text", help="the note")
    p.add_argument("--exp", type=int, metavar="ID", help="the experiment it is about")
    p.add_argument("--author", help="who writes it (default: the agent, else human; an agent "
                                    "cannot write as anyone else)")
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
    with open_ledger(args) as ledger:
        who = identify(ledger)
        if who.is_agent and args.author not in (None, who.agent, who.author):
            raise RoleError(f"agent {who.agent!r} cannot write a note as {args.author!r}: "
                            "notes from an agent are authored by the agent")
        author = who.author if who.is_agent else (args.author or "human")
        note_id = actions.add_note(ledger, args.text, exp_id=args.exp, actor=author,
                                   agent=who.agent)
    if args.json:
        print_json({"note_id": note_id, "experiment_id": args.exp, "author": author})
    else:
        say(f"note {note_id} saved" + (f" on #{args.exp}" if args.exp else ""))
    return 0


def action_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        who = identify(ledger)
        if args.action == "kill":
            owner = actions.owner_of(ledger, args.id)
            if owner != who.agent:
                require_human(who, f"killing {owner or 'a human'}'s run #{args.id}")
            grace = settings_for(here()).kill_grace_s
            message = actions.request_kill(ledger, args.id, actor=who.actor, grace_s=grace)
        else:
            require_human(who, f"`cockpit {args.action}`")
            message = getattr(actions, args.action)(ledger, args.id, actor=who.actor)
        exp = ledger.get(args.id)
    if args.json:
        print_json({"id": exp.id, "action": args.action, "message": message,
                    "status": exp.status, "decision": exp.decision, "review": exp.review})
    else:
        say(message)
    return 0
