"""The supervisor's worktree watching: vanilla agents' run.log and results.tsv become experiments.

Only the supervisor ingests (it holds the one lock per ledger), so two open cockpits can no longer
each keep a read offset and record a run twice. The read offset itself lives in the ledger (the
observed run's log copy: app/observe/runlog.py), so a supervisor killed and restarted resumes
where the last one stopped.

Usage (one thread owns the Ledger):
    ingest = Ingest(ledger, say=log.info)
    ingest.set_agents({"/path/wt": "ada"})   # returns the roots to add to / remove from the watcher
    ingest.handle(events)                     # events from app.observe.watch.WorktreeWatcher
    ingest.tick()                             # now and then: new roots, unfinished results.tsv lines
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from app.ledger.store import Ledger
from app.observe import worktrees as observe
from app.observe.watch import ResultsTsvChanged, RunLogChanged, WatchEvent, WorktreeGone

TSV_RETRY_S = 2.5  # a results.tsv whose last line was unfinished is read again after this long


def _key(path: str | Path) -> Path:
    """Absolute, symlinks kept: the way app.observe.watch names the roots it reports."""
    return Path(os.path.abspath(path))


class Ingest:
    def __init__(self, ledger: Ledger, say: Callable[[str], None]) -> None:
        self.ledger = ledger
        self.say = say  # one line for the supervisor's log
        self.agents: dict[Path, str] = {}  # watched worktree -> agent name
        self._fresh: set[Path] = set()
        self._tsv_retry: dict[Path, float] = {}
        self._told: set[int] = set()  # observed runs whose end was logged

    def set_agents(self, worktrees: dict[str, str]) -> tuple[set[Path], set[Path]]:
        """Watch exactly these worktrees (path -> agent); the roots (added, removed)."""
        wanted = {_key(path): name for path, name in worktrees.items() if path}
        added, removed = wanted.keys() - self.agents.keys(), self.agents.keys() - wanted.keys()
        self.agents = wanted
        self._fresh = (self._fresh | added) - removed
        return set(added), set(removed)

    def handle(self, events: list[WatchEvent]) -> None:
        for event in events:
            name = self.agents.get(event.worktree)
            if name is None:
                continue
            if isinstance(event, RunLogChanged):
                self.observe(event.worktree, name)
            elif isinstance(event, ResultsTsvChanged):
                self.import_tsv(event.worktree, name)
            elif isinstance(event, WorktreeGone):
                self._tsv_retry.pop(event.worktree, None)
                observe.worktree_gone(self.ledger, event.worktree, name)
                self.say(f"agent {name}: worktree {event.worktree} is gone")

    def tick(self) -> None:
        """Sync roots added since the last tick (what their agent did while nobody watched) and
        read again results.tsv files whose last line was unfinished."""
        fresh, self._fresh = self._fresh, set()
        for worktree in sorted(fresh):
            if worktree in self.agents and worktree.is_dir():
                if (worktree / "run.log").exists():
                    self.observe(worktree, self.agents[worktree])
                if (worktree / "results.tsv").exists():
                    self.import_tsv(worktree, self.agents[worktree])
        now = time.monotonic()
        for worktree, due in list(self._tsv_retry.items()):
            if now >= due:
                del self._tsv_retry[worktree]
                if worktree in self.agents:
                    self.import_tsv(worktree, self.agents[worktree])
        observe.check_observed(self.ledger)

    def observe(self, worktree: Path, name: str) -> None:
        exp_id = observe.observe_run_log(self.ledger, worktree, name)
        if exp_id is not None:
            exp = self.ledger.get(exp_id)
            if not exp.is_live and exp_id not in self._told:
                self._told.add(exp_id)
                self.say(f"agent {name}: observed run #{exp_id} finished "
                         f"({exp.effective_decision}, val_bpb {exp.val_bpb_text})")

    def import_tsv(self, worktree: Path, name: str) -> None:
        report = observe.import_results_tsv(self.ledger, worktree, name)
        if report.pending_line:
            self._tsv_retry[worktree] = time.monotonic() + TSV_RETRY_S
        if report.error:
            self.say(f"agent {name}: {report.error}")
        if report.changed:
            self.say(f"agent {name}: results.tsv rows imported ({len(report.imported)} new, "
                     f"{len(report.linked)} matched to runs, {len(report.skipped)} unreadable)")
