"""Read-outs: `status [ID]`, `history`, `best`, `report`, `suggest` (all take --json)."""
from __future__ import annotations

import argparse
import time
from typing import Any

from app import git
from app.commands import (
    CommandError,
    add_json_flag,
    fmt_delta,
    fmt_val,
    here,
    main_or_none,
    one_line,
    open_ledger,
    print_json,
    say,
    settings_for,
    stream_json_list,
)
from app.ledger import report
from app.ledger.schema import TRUST_FLAGS
from app.ledger.store import Ledger, LedgerError
from app.ledger.vocabulary import outcome
from app.run.plan import agent_name, tag_name

FILTERS = ("tag", "agent", "branch", "status", "decision", "category")


def _add_filters(p: argparse.ArgumentParser, names: tuple[str, ...] = FILTERS) -> None:
    for name in names:
        p.add_argument(f"--{name}", help=f"only experiments with this {name}")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("status", help="what is running and waiting, or one experiment")
    p.add_argument("id", nargs="?", type=int, metavar="ID", help="show this experiment in full")
    add_json_flag(p)
    p.set_defaults(handler=status_command)

    p = subparsers.add_parser("history", help="experiments so far, oldest first")
    _add_filters(p)
    p.add_argument("--limit", type=int, default=50, help="newest N (0: all; default 50)")
    add_json_flag(p)
    p.set_defaults(handler=history_command)

    p = subparsers.add_parser("best", help="the best kept experiment, overall and per tag")
    _add_filters(p, ("tag", "agent", "branch"))
    add_json_flag(p)
    p.set_defaults(handler=best_command)

    p = subparsers.add_parser("report", help="counts, keep rate, bests, progression, categories")
    _add_filters(p, ("tag", "agent", "branch"))
    add_json_flag(p)
    p.set_defaults(handler=report_command)

    p = subparsers.add_parser("suggest", help="what kind of experiment to try next, and why")
    _add_filters(p, ("tag", "agent"))
    p.add_argument("--all", action="store_true", help="the whole ledger, not this worktree's tag")
    add_json_flag(p)
    p.set_defaults(handler=suggest_command)


def _filters(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _age(at: float | None) -> str:
    if at is None:
        return "—"
    seconds = max(0, time.time() - at)
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def status_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        if args.id is not None:
            try:
                detail = report.experiment_detail(ledger, ledger.get(args.id))
            except LedgerError as exc:
                raise CommandError(str(exc)) from exc
            if args.json:
                print_json(detail)
            else:
                _print_detail(detail)
            return 0
        state = report.overview(ledger)
    if args.json:
        print_json(state)
        return 0
    if not state["live"]:
        say("nothing running")
    for e in state["live"]:
        pct = "?" if e["progress_pct"] is None else f"{e['progress_pct']:.0f}%"
        loss = "" if e["last_loss"] is None else f" loss {e['last_loss']:.4f}"
        kill = "  (kill requested)" if e["kill_requested"] else ""
        say(f"#{e['id']} {e['status']:<8} {e['agent']:<12} {pct:>5}{loss} "
              f"running {_age(e['started_at'])}  {one_line(e['description'], 50)}{kill}")
    for e in state["pending_review"]:
        say(f"#{e['id']} awaits review: val_bpb {fmt_val(e['val_bpb'])}  "
              f"{one_line(e['description'], 50)}  (cockpit approve/reject {e['id']})")
    if state["recent"]:
        say("recent:")
    for e in state["recent"]:
        say(f"  #{e['id']} {outcome(e['decision'], e['status']):<8} {fmt_val(e['val_bpb'])}  "
              f"{e['agent']:<12} {one_line(e['description'], 50)}")
    return 0


def _print_detail(d: dict[str, Any]) -> None:
    say(f"#{d['id']} {outcome(d['decision'], d['status'])}"
          + (f" (review {d['review']})" if d["review"] else "") + f": {d['description']}")
    for key in ("reason", "hypothesis", "category", "tag", "agent", "branch", "commit_sha",
                "backend", "val_bpb", "reported_val_bpb", "measured_val_bpb", "trusted_eval_s",
                "delta", "margin", "exit_code", "training_seconds", "train_wall_s",
                "num_steps", "peak_vram_mb", "log_path"):
        if d.get(key) not in (None, ""):
            say(f"  {key:<17} {d[key]}")
    flags = [f for f in ("near_miss", "contended", "integrity", "not_comparable", "needs_rerun",
                         *TRUST_FLAGS) if d.get(f)]
    if flags:
        say(f"  {'flags':<17} {', '.join(flags)}")
    if d["crash_tail"]:
        say("  crash tail:")
        for line in d["crash_tail"].splitlines()[-20:]:
            say(f"    {line}")
    for note in d["notes"]:
        say(f"  note {note['id']} ({note['author']}): {note['text']}")


def history_command(args: argparse.Namespace) -> int:
    filters = _filters(args, FILTERS)
    with open_ledger(args) as ledger:
        if args.json:
            stream_json_list(report.history_json(ledger, limit=args.limit or None, **filters))
            return 0
        rows = report.history(ledger, limit=args.limit or None, **filters)
        count = 0
        for r in rows:
            count += 1
            flags = "".join(mark for key, mark in (("near_miss", " ~"), ("contended", " !c"),
                                                   ("integrity", " !i")) if r[key])
            say(f"#{r['id']:<5} {outcome(r['decision'], r['status']):<8} {fmt_val(r['val_bpb']):>9} "
                  f"{fmt_delta(r['delta']):>10}  {(r['category'] or '-'):<12.12} "
                  f"{r['agent']:<12.12} {one_line(r['description'], 60)}{flags}")
    if not count:
        say("no experiments")
    return 0


def best_command(args: argparse.Namespace) -> int:
    filters = _filters(args, ("tag", "agent", "branch"))
    with open_ledger(args) as ledger:
        b, by_tag = report.best_overall(ledger, **filters), report.best_by_tag(ledger, **filters)
    if args.json:
        print_json({"best": b, "by_tag": by_tag})
        return 0
    if b is None:
        say("no kept experiment yet")
        return 0
    say(f"best: #{b['id']} {fmt_val(b['val_bpb'])} ({b['tag']}, {b['agent']}, {b['commit']}) "
          f"{one_line(b['description'], 60)}")
    _say_bests_by_tag(by_tag)
    return 0


def _say_bests_by_tag(by_tag: dict[str, dict[str, Any]]) -> None:
    """One line per tag; each tag's comparability key under it when the tags were measured unalike."""
    unalike = len({e.get("compare_key") for e in by_tag.values()}) > 1
    for tag, e in by_tag.items():
        say(f"  {tag:<24} #{e['id']:<5} {fmt_val(e['val_bpb'])}  {one_line(e['description'], 50)}")
        if unalike:
            say(f"  {'':<24} measured under {one_line(e.get('compare_key') or 'unknown', 100)}")


def report_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        result = report.summary_report(ledger, **_filters(args, ("tag", "agent", "branch")))
    if args.json:
        print_json(result)
        return 0
    rate = "—" if result["keep_rate"] is None else f"{result['keep_rate']:.0%}"
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result["by_decision"].items()))
    say(f"{result['total']} experiments ({counts}); keep rate {rate}; "
          f"{result['training_minutes']:.1f} training minutes")
    if result["best_by_tag"]:
        say("best per tag:")
        _say_bests_by_tag(result["best_by_tag"])
    if result["progression"]:
        say("progression of kept runs:")
        for s in result["progression"]:
            gain = "baseline" if s["improvement"] is None else f"-{s['improvement']:.6f}"
            say(f"  #{s['id']:<5} {s['tag']:<16.16} {fmt_val(s['val_bpb'])} {gain:>10}  "
                  f"{one_line(s['description'], 50)}")
    if result["categories"]:
        say("categories: " + ", ".join(f"{c} {v['keep']}/{v['runs']}"
                                         for c, v in result["categories"].items()))
    return 0


def _suggest_scope(args: argparse.Namespace, ledger: Ledger) -> dict[str, Any]:
    """Explicit filters, else the tag of the agent worktree we are in, else everything."""
    filters = _filters(args, ("tag", "agent"))
    if filters or args.all:
        return filters
    start = here()
    main = main_or_none(start)
    if main is None or main.resolve() == start.resolve():
        return {}
    try:
        branch = git.current_branch(start)
    except git.GitError:
        return {}
    agent = agent_name(None, start)
    return {"tag": tag_name(None, ledger, agent, branch, settings_for(start))}


def suggest_command(args: argparse.Namespace) -> int:
    with open_ledger(args) as ledger:
        scope = _suggest_scope(args, ledger)
        result = report.suggestion(ledger, **scope)
    result["scope"] = scope
    if args.json:
        print_json(result)
        return 0
    where = ", ".join(f"{k} {v}" for k, v in scope.items()) or "all experiments"
    say(f"strategy: {result['strategy'].upper()} ({result['reason']}; {where})")
    say(result["advice"])
    if result["near_misses"]:
        say("near-misses worth combining:")
        for e in result["near_misses"]:
            say(f"  #{e['id']} {fmt_val(e['val_bpb'])}  {one_line(e['description'], 60)}")
    if result["underexplored"]:
        say(f"categories with few runs: {', '.join(result['underexplored'])}")
    if result["notes"]:
        say("recent notes:")
        for n in result["notes"]:
            about = f" (#{n['experiment_id']})" if n["experiment_id"] else ""
            say(f"  - {one_line(n['text'], 100)}{about}")
    return 0
