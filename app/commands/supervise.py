"""`cockpit supervise [--status|--stop|--start]`, `cockpit attention`, `cockpit notify --test`.

`cockpit supervise` runs the supervisor in the foreground (what `cockpit`, `agent new` and `demo`
start detached, logging to <ledger dir>/supervisor.log).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from app.commands import (
    CommandError,
    add_json_flag,
    here,
    ledger_path,
    main_or_none,
    print_json,
    say,
    settings_for,
)
from app.errors import EXIT_INFRA
from app.ledger.store import Ledger
from app.roles import identify, require_human
from app.supervisor import process


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "supervise", help="the one background process per repository that records vanilla runs, "
                          "reaps lost runs, watches agents and sends notifications",
        description="Without an option, run the supervisor in the foreground (exactly one per "
                    "ledger: a second one exits naming the first's pid).")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--status", action="store_true",
                      help="say whether one runs: exit 0 when it does, 1 when not")
    what.add_argument("--stop", action="store_true", help="stop the running supervisor")
    what.add_argument("--start", action="store_true",
                      help="start one in the background unless one runs")
    p.set_defaults(handler=supervise_command)

    attention = subparsers.add_parser("attention", help="what needs a human now: reviews, agents "
                                      "waiting or stuck, crash streaks, new bests, supervisor trouble")
    add_json_flag(attention)
    attention.set_defaults(handler=attention_command)

    notify = subparsers.add_parser("notify", help="notification URLs (notify = [...] in settings)")
    notify.add_argument("--test", action="store_true", required=True,
                        help="send a test message to every configured URL")
    notify.set_defaults(handler=notify_command)


def repo_name(ledger: Path) -> str:
    main = main_or_none(here())
    return main.name if main is not None else ledger.parent.parent.name or str(ledger)


def ensure_supervisor(ledger: Path, cwd: Path | None = None) -> None:
    """Start the supervisor in the background unless it runs (what `cockpit`, `agent new`, `demo`
    do); it runs in `cwd` (default: the main worktree), whose settings it reads."""
    if process.running_pid(ledger) is None and process.autostart_enabled():
        pid = process.ensure_running(ledger, cwd or main_or_none(here()) or ledger.parent)
        say(f"supervisor started in the background (pid {pid}; log {process.log_path(ledger)})",
            err=True)


def supervise_command(args: argparse.Namespace) -> int:
    ledger = ledger_path(args)
    if args.status:
        return _status(ledger)
    if args.stop:  # an agent stopping it would blind the human
        require_human(identify(None), "`cockpit supervise --stop`")
        try:
            pid = process.stop(ledger)
        except TimeoutError as exc:
            raise CommandError(str(exc), EXIT_INFRA) from exc
        say(f"supervisor (pid {pid}) stopped" if pid else "no supervisor runs for this ledger")
        return 0
    if args.start:
        pid = process.ensure_running(ledger, main_or_none(here()) or ledger.parent, wait=True)
        if pid is None:
            raise CommandError(f"the supervisor did not start: see {process.log_path(ledger)}",
                               EXIT_INFRA)
        say(f"supervisor runs (pid {pid}; log {process.log_path(ledger)})")
        return 0
    from app.supervisor.daemon import (
        Supervisor,  # watchfiles, apprise: only for the daemon
    )

    try:
        supervisor = Supervisor(ledger, settings_for(here()), repo=repo_name(ledger))
    except ValueError as exc:  # a notify URL apprise does not understand
        raise CommandError(str(exc)) from exc
    try:
        return supervisor.run()
    except process.SupervisorRunning as exc:
        raise CommandError(str(exc)) from exc


def _status(ledger: Path) -> int:
    pid = process.running_pid(ledger)
    if pid is None:
        say(f"no supervisor runs for {ledger}")
        return 1
    beat = ""
    if ledger.exists():
        from app.ledger.supervisor import read_supervisor

        with Ledger(ledger, read_only=True) as db:
            row = read_supervisor(db)
        if row is not None and row.heartbeat_at:
            beat = f", heartbeat {time.time() - row.heartbeat_at:.0f} s ago"
    say(f"supervisor runs (pid {pid}{beat}; log {process.log_path(ledger)})")
    return 0


def attention_command(args: argparse.Namespace) -> int:
    from app.supervisor.status import current_attention

    with Ledger(ledger_path(args), read_only=True) as ledger:
        items = current_attention(ledger, settings_for(here()), time.time())
    if args.json:
        print_json([item.as_dict() for item in items])
    elif not items:
        say("nothing needs you")
    else:
        for item in items:
            say(f"{item.kind:<13} {item.title}")
    return 0


def notify_command(args: argparse.Namespace) -> int:
    from app.supervisor.notify import apprise_sender, clean

    settings = settings_for(here())
    if not settings.notify:
        raise CommandError('no notification URLs: set notify = ["ntfys://topic", ...] under '
                           "[tool.cockpit] in pyproject.toml or in .autoresearch/config.toml")
    try:
        send = apprise_sender(settings.notify)
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    repo = repo_name(ledger_path(args))
    if not send(f"[{clean(repo, 80)}] cockpit notify --test",
                f"repository {clean(repo, 80)}: notifications reach you."):
        raise CommandError(f"sending to {len(settings.notify)} URL(s) failed (see above)", EXIT_INFRA)
    say(f"test message sent to {len(settings.notify)} URL(s)")
    return 0
