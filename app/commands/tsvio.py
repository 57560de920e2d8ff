"""`cockpit import results.tsv` and `cockpit export tsv`: upstream's results file in and out."""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.commands import CommandError, add_json_flag, open_ledger, print_json, say
from app.ledger.queries import insert_experiments
from app.ledger.store import Ledger, LedgerConflict
from app.logs.textsafe import sanitize
from app.observe.runlog import IMPORTED
from app.observe.tsv import EXPORT_STATUS, TsvRow, read_results_tsv, row_fields, write_results_tsv
from app.roles import identify


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("import", help="import a results.tsv (idempotent; fork variants ok)")
    p.add_argument("path", type=Path, help="results.tsv to import")
    p.add_argument("--tag", help="tag for the imported rows (default: the file's name)")
    p.add_argument("--agent", default="imported", help="agent for the imported rows")
    p.add_argument("--branch", default="", help="branch the rows were run on, if known")
    p.add_argument("--map-status", action="append", default=[], metavar="FORK=STATUS",
                   help="map a fork's own status onto keep/discard/crash (repeatable)")
    add_json_flag(p)
    p.set_defaults(handler=import_command)

    p = subparsers.add_parser("export", help="export the ledger as upstream's 5-column results.tsv")
    p.add_argument("format", choices=("tsv",), help="output format")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
    p.add_argument("--tag", help="only this tag")
    p.add_argument("--agent", help="only this agent")
    p.add_argument("--branch", help="only this branch")
    p.add_argument("--raw", action="store_true",
                   help="keep agents' text byte for byte, escape sequences included (only to a "
                        "file or a pipe; by default they are removed)")
    p.set_defaults(handler=export_command)


def _status_map(pairs: list[str]) -> dict[str, str]:
    mapping = {}
    for pair in pairs:
        source, sep, target = pair.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise CommandError(f"--map-status wants FORK=STATUS, got {pair!r}")
        mapping[source.strip()] = target.strip()
    return mapping


def _fields(row: TsvRow, tag: str, agent: str, branch: str, source: str) -> dict:
    now = time.time()
    return dict(row_fields(row), tag=tag, agent=agent, branch=branch, backend=IMPORTED,
                status="finished", reason=f"imported from {source} line {row.line_no}",
                created_at=now, finished_at=now)


@dataclass
class ImportReport:
    added: int
    already: int
    skipped: list[dict]
    repaired: list[dict]


def import_rows(ledger: Ledger, rows: list[TsvRow], tag: str, agent: str, branch: str,
                source: str, actor: str = "human") -> tuple[int, int]:
    """Insert rows not yet in the ledger, in batches (live runs never wait long for the write
    lock); each batch is one transaction with its `import` event: (added, already there)."""
    added = insert_experiments(
        ledger, (_fields(row, tag, agent, branch, source) for row in rows), actor=actor,
        agent=agent, detail={"source": source, "tag": tag})
    return added, len(rows) - added


def import_command(args: argparse.Namespace) -> int:
    if not args.path.is_file():
        raise CommandError(f"no file {args.path}")
    try:
        parsed = read_results_tsv(args.path, _status_map(args.map_status))
    except UnicodeError as exc:
        raise CommandError(f"{args.path}: {exc}") from exc
    except ValueError as exc:  # TsvFormatError included: a file we cannot read as results.tsv
        raise CommandError(str(exc)) from exc
    tag = args.tag or args.path.stem
    with open_ledger(args) as ledger:
        try:
            added, already = import_rows(ledger, parsed.rows, tag, args.agent, args.branch,
                                         args.path.name, actor=identify(ledger).actor)
        except LedgerConflict as exc:
            raise CommandError(f"import of {args.path} stopped: {exc}; rows before it were "
                               "imported, run it again to finish (imports are idempotent)") from exc
    report = ImportReport(added, already,
                          [{"line": s.line_no, "reason": s.reason} for s in parsed.skipped],
                          [{"line": r.line_no, "reason": r.reason} for r in parsed.repaired])
    if args.json:
        print_json({"path": str(args.path), "tag": tag, **vars(report),
                    "suggestions": parsed.suggestions})
        return 0
    say(f"{args.path.name}: {added} imported, {already} already in the ledger, "
          f"{len(report.skipped)} skipped (tag {tag})")
    for item in report.skipped:
        say(f"  skipped line {item['line']}: {item['reason']}")
    for item in report.repaired:
        say(f"  line {item['line']}: {item['reason']}")
    for hint in parsed.suggestions:
        say(f"  hint: {hint}")
    return 0


@dataclass
class _ExportRow:
    commit: str
    val_bpb: float | None
    memory_gb: float | None
    status: str
    description: str


def export_command(args: argparse.Namespace) -> int:
    if args.raw and not args.output and sys.stdout.isatty():
        raise CommandError("--raw writes agents' text unchanged, escape sequences included: "
                           "only to a file (-o PATH) or a pipe, never to a terminal")
    clean = (lambda text: text) if args.raw else sanitize
    with open_ledger(args) as ledger:
        rows = [
            _ExportRow(commit=clean(e.commit_sha[:7]), val_bpb=e.val_bpb,
                       memory_gb=None if e.peak_vram_mb is None else e.peak_vram_mb / 1024,
                       status=e.decision or "", description=clean(e.description))
            for e in ledger.experiments(tag=args.tag, agent=args.agent, branch=args.branch)
            if e.decision in EXPORT_STATUS and e.commit_sha]
    try:
        count = write_results_tsv(rows, args.output if args.output else sys.stdout)
    except ValueError as exc:
        raise CommandError(f"export failed, nothing written: {exc}") from exc
    if args.output:
        say(f"{count} rows written to {args.output}", err=True)
    return 0
