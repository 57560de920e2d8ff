"""`cockpit agent new|list|stop|remove`: agents, each in its own git worktree and tmux pane.

$COCKPIT_TMUX_SOCKET names a private tmux server (`tmux -L NAME`) for the agents' panes.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from app.agents import lifecycle as agents
from app.commands import (
    CommandError,
    add_json_flag,
    here,
    ledger_path,
    main_or_none,
    one_line,
    open_ledger,
    print_json,
    say,
    settings_for,
)
from app.commands.supervise import ensure_supervisor


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "agent", help="create, list, stop and remove agents (a worktree and a tmux pane each)",
        description="Agents work in their own git worktree on branch autoresearch/<tag>-<name>, "
                    "in a tmux pane beside the cockpit.")
    actions = p.add_subparsers(dest="agent_action", metavar="ACTION", required=True)

    new = actions.add_parser(
        "new", help="create a worktree and branch from main and start the agent in a tmux pane",
        description="Inside tmux the pane splits the current window (a new window when it is "
                    "full); outside, a detached session runs the cockpit in its first pane.")
    new.add_argument("name", help="agent name: letters, digits, '-' or '_'")
    new.add_argument("--cmd", help="agent command (default: agent_command in [tool.cockpit], "
                                   "e.g. claude; a plain shell if it is not installed)")
    new.add_argument("--tag", help="run tag (default: tag in [tool.cockpit], else today, e.g. nov22)")
    new.add_argument("--search", action="store_true", help="run the built-in search agent")
    new.add_argument("--worktree", type=Path,
                     help="where the worktree goes (default: .autoresearch/worktrees/NAME)")
    new.set_defaults(handler=new_command)

    listing = actions.add_parser("list", help="agents, their state, pane and last experiment")
    listing.add_argument("--all", action="store_true", help="include removed agents")
    add_json_flag(listing)
    listing.set_defaults(handler=list_command)

    stop = actions.add_parser("stop", help="close the agent's pane; its worktree and branch stay")
    stop.add_argument("name")
    stop.set_defaults(handler=stop_command)

    remove = actions.add_parser(
        "remove", help="stop the agent and delete its worktree (refused while it holds "
                       "uncommitted work); the branch stays")
    remove.add_argument("name")
    remove.add_argument("--delete-branch", action="store_true",
                        help="also delete its branch (git branch -D)")
    remove.set_defaults(handler=remove_command)


def _socket() -> str | None:
    return os.environ.get(agents.TMUX_SOCKET_ENV) or None


def new_command(args: argparse.Namespace) -> int:
    if args.search and args.cmd:
        raise CommandError("--search runs the built-in search agent: leave out --cmd")
    main = main_or_none(here())
    if main is None:
        raise CommandError(f"{here()} is not inside a git repository: run `cockpit agent new` "
                           "in the autoresearch repository")
    with open_ledger(args, main) as ledger:
        created = agents.create_agent(ledger, main, args.name, command=args.cmd,
                       tag=args.tag, search=args.search, settings=settings_for(main),
                       worktree=args.worktree, socket=_socket())
    say("\n".join(created.describe()))
    ensure_supervisor(ledger_path(args, main))
    return 0


def list_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        statuses = agents.agent_statuses(ledger, include_removed=args.all)
    if args.json:
        print_json([s.as_dict() for s in statuses])
        return 0
    if not statuses:
        say("no agents yet: cockpit agent new NAME")
        return 0
    rows = [("NAME", "STATE", "PANE", "BRANCH", "LAST EXPERIMENT", "WORKTREE")]
    for s in statuses:
        a, last = s.agent, s.last
        pane = f"{a.pane_id or '-'} {'alive' if s.alive else 'dead'}"
        latest = "-" if last is None else one_line(
            f"#{last.id} {last.effective_decision} {last.val_bpb_text} {last.description}", 40)
        rows.append((a.name, a.state, pane, a.branch, latest, _short(a.worktree)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        say("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def stop_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        say(agents.stop_agent(ledger, args.name, socket=_socket()))
    return 0


def remove_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        say(agents.remove_agent(ledger, args.name, delete_branch=args.delete_branch,
                   socket=_socket()))
    return 0


def _short(path: str) -> str:
    """A worktree path relative to the current folder when it is below it."""
    try:
        return str(Path(path).relative_to(here()))
    except ValueError:
        return path
