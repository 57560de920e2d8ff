"""Vanilla agents: runs that an upstream program.md agent starts by itself show up in the ledger.

Usage (the TUI's watcher, on RunLogChanged / ResultsTsvChanged / WorktreeGone):
    exp_id = observe_run_log(ledger, worktree, agent="ada")    # register, tail, finish a run
    report = import_results_tsv(ledger, worktree, agent="ada")  # rows appended to results.tsv
    check_observed(ledger)                                      # now and then: writers that died

Whose run.log is it? `cockpit run` truncates run.log and tees into it, so run.log is the
runner's while a cockpit experiment of that worktree is live, or when it equals the log of the
worktree's newest experiment. Anything else is a vanilla run: an experiment with backend
"observed", commit = the worktree's HEAD, and log_path = `<ledger dir>/logs/<id>.log`, a copy
that grows with each observation. The copy is also the memory of how far run.log was read, so
a restarted cockpit resumes where it stopped, and a rewritten run.log or a removed worktree
loses nothing. run.log shrinking, or changing before the read offset, starts a new run.

Decisions: the vanilla agent decides by itself. An observed run finishes with decision NULL once
its summary is complete, or as a crash (FAIL, or the process writing run.log exited without a
summary). The row the agent appends to results.tsv, matched by commit, then sets the decision;
a row matching nothing becomes an experiment with backend "import". Rows are imported once
(tsv.row_key in import_key).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from app import git
from app.ledger.queries import import_key_known, unimported_by_commit
from app.ledger.store import Experiment, Ledger, LedgerConflict
from app.observe.runlog import (
    IMPORTED,
    OBSERVED,
    agent_for,
    check_observed,
    observe_run_log,
    quiet_git,
    worktree_gone,
)
from app.observe.tsv import Skipped, TsvFormatError, parse_results_tsv, row_fields, row_key
from app.run.plan import derived_tag

__all__ = ["ImportReport", "OBSERVED", "IMPORTED", "check_observed", "import_results_tsv",
           "observe_run_log", "sync_worktree", "worktree_gone"]

RESULTS_TSV = "results.tsv"
SETTLE_S = 2.0  # an unterminated last results.tsv line this fresh is a row still being written


@dataclass
class ImportReport:
    path: Path
    imported: list[int] = field(default_factory=list)  # new experiments (backend "import")
    linked: list[int] = field(default_factory=list)  # existing experiments a row matched
    already: int = 0  # rows imported before
    skipped: list[Skipped] = field(default_factory=list)  # unreadable rows, with reasons
    pending_line: bool = False  # an unfinished last line, left for the next call
    error: str = ""  # why the file as a whole could not be read
    gone: bool = False  # the worktree itself has vanished

    @property
    def changed(self) -> bool:
        return bool(self.imported or self.linked)


def import_results_tsv(ledger: Ledger, worktree: Path | str, agent: str | None = None,
                       settle_s: float = SETTLE_S) -> ImportReport:
    """Import rows a vanilla agent appended to the worktree's results.tsv (idempotent)."""
    wt = Path(worktree)
    report = ImportReport(wt / RESULTS_TSV)
    if not wt.is_dir():
        report.gone = True
        worktree_gone(ledger, wt, agent)
        return report
    wt = wt.resolve()
    report.path = wt / RESULTS_TSV
    try:
        data = report.path.read_bytes()
        age = time.time() - report.path.stat().st_mtime
    except FileNotFoundError:
        return report
    except OSError as exc:
        report.error = f"cannot read {report.path}: {exc}"
        return report
    if data and not data.endswith((b"\n", b"\r")) and age < settle_s:
        data = data[:max(data.rfind(b"\n"), data.rfind(b"\r")) + 1]
        report.pending_line = True
    try:
        parsed = parse_results_tsv(data)
    except TsvFormatError as exc:
        report.error = f"{report.path}: {exc}"
        return report
    report.skipped = parsed.skipped
    if ledger.read_only:
        return report
    name = agent or agent_for(ledger, wt)
    branch = quiet_git(git.current_branch, wt) or ""
    for row in parsed.rows:
        key = row_key(row)
        if import_key_known(ledger, key):
            report.already += 1
            continue
        where = f"{report.path.name} line {row.line_no}"
        match = _match(ledger, wt, row.commit)
        try:
            if match is None:
                report.imported.append(ledger.register(
                    actor="import", **row_fields(row), tag=derived_tag(ledger, name, branch),
                    agent=name, worktree=str(wt), branch=branch, backend=IMPORTED,
                    status="finished", reason=_import_reason(row.extra, where),
                    finished_at=time.time()))
            elif match.backend == OBSERVED:
                ledger.update(match.id, event="import", actor="import",
                              detail={"line": row.line_no, "decision": row.status},
                              import_key=key, decision=row.status,
                              description=row.description or match.description,
                              reason=_import_reason(row.extra, where, decided=True))
                report.linked.append(match.id)
            else:
                ledger.update(match.id, event="import", actor="import",
                              detail={"line": row.line_no, "linked": True}, import_key=key)
                report.linked.append(match.id)
        except LedgerConflict:  # another importer got there first
            report.already += 1
    return report


def _match(ledger: Ledger, wt: Path, commit: str) -> Experiment | None:
    """The run a results.tsv row reports: same worktree, same (short) commit, not yet imported;
    observed runs first, then the newest."""
    commit = commit.strip().lower()
    if len(commit) < 4 or any(c not in "0123456789abcdef" for c in commit):
        return None
    return unimported_by_commit(ledger, str(wt), commit, except_backend=IMPORTED,
                                prefer_backend=OBSERVED)


def _import_reason(extra: dict[str, str], where: str, decided: bool = False) -> str:
    text = f"{'decided by the agent' if decided else 'imported'}: {where}"
    if "original_status" in extra:
        text += f" (status {extra['original_status']!r})"
    return text


def sync_worktree(ledger: Ledger, worktree: Path | str, agent: str | None = None) -> ImportReport:
    """Observe run.log and import results.tsv now (before a worktree goes away)."""
    observe_run_log(ledger, worktree, agent)
    return import_results_tsv(ledger, worktree, agent, settle_s=0.0)
