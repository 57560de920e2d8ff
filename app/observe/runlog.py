"""Tail one worktree's run.log into an observed experiment (see app/observe/worktrees.py for the rules).

Per process, a _Tail remembers how far each run.log was read; the copy in
`<ledger dir>/logs/<id>.log` remembers it across processes. Shared helpers for app/observe/worktrees.py
(which agent and tag a worktree belongs to, quiet git facts) live here too.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import git
from app.ledger.queries import newest_in_worktree
from app.ledger.store import LIVE_STATUSES, Experiment, Ledger, StepRow, finite, summary_columns
from app.logs.parse import StreamParser, summary_problems
from app.logs.steps import StepRecord
from app.run.plan import derived_tag
from app.run.procs import process_identity, same_process

OBSERVED, IMPORTED = "observed", "import"  # experiment backends written by app/observe/worktrees.py
RUN_LOG = "run.log"
CHUNK = 1 << 20  # bytes read from run.log at a time
MARK_BYTES = 256  # bytes before the read offset that must not change while tailing (> 1 step line)
SUMMARY_WINDOW = 256 * 1024  # the summary block is looked for in this many final bytes
COMPARE_BYTES = 4096  # bytes compared at each end to tell two logs apart
STEP_EVERY_S = 1.0  # step rows and heartbeat at most this often, like the runner
STEP_BUCKETS_PER_PCT = 10  # steps kept per 1 % of progress (one per 0.1 %: a 7000-step run's curve
# keeps ~1000 points, however fast the log was read; a log without progress keeps one per 10 steps)


@dataclass
class _Tail:
    """How far one run.log has been read into one observed experiment (per process)."""

    exp_id: int
    inode: int
    offset: int
    mark: bytes
    started_at: float
    parser: StreamParser = field(default_factory=StreamParser)
    done: bool = False
    max_step: int = -1  # newest step in the ledger
    unsent: list[StepRecord] = field(default_factory=list)  # read, not yet in the ledger (thinned)
    last_write: float = 0.0
    summary_json: str = ""


_TAILS: dict[tuple[str, str], _Tail] = {}
_LOCK = threading.Lock()


def observe_run_log(ledger: Ledger, worktree: Path | str, agent: str | None = None) -> int | None:
    """Bring the observed experiment of this worktree's run.log up to date; its id, or None when
    run.log is absent or belongs to `cockpit run`."""
    if ledger.read_only:
        return None
    wt = Path(worktree)
    if not wt.is_dir():
        worktree_gone(ledger, wt, agent)
        return None
    wt = wt.resolve()
    runlog = wt / RUN_LOG
    key = (str(ledger.path), str(runlog))
    with _LOCK:
        tail = _TAILS.get(key)
        try:
            st = runlog.stat()
        except OSError:
            _TAILS.pop(key, None)
            return None
        if tail is not None and not _continues(tail, runlog, st):
            if not tail.done:
                _finish_crash(ledger, tail, "run.log was rewritten before its summary appeared")
            tail = None
        if tail is None:
            tail = _start(ledger, wt, runlog, st, agent)
            if tail is None:
                _TAILS.pop(key, None)
                return None
            _TAILS[key] = tail
        writer_gone = not tail.done and _writer_gone(ledger, tail.exp_id)
        try:  # sized after the writer check: whatever it wrote before exiting gets read
            size = runlog.stat().st_size
        except OSError:
            size = st.st_size
        _advance(ledger, tail, runlog, size, writer_gone)
        return tail.exp_id


def check_observed(ledger: Ledger) -> list[int]:
    """Finish live observed runs whose writing process has exited; the ids looked at."""
    seen = []
    for exp in ledger.live():
        if exp.backend == OBSERVED and exp.runner_pid and not same_process(exp.runner_pid, exp.runner_start):
            observe_run_log(ledger, exp.worktree, exp.agent)
            seen.append(exp.id)
    return seen


def _continues(tail: _Tail, runlog: Path, st: os.stat_result) -> bool:
    if st.st_ino != tail.inode or st.st_size < tail.offset:
        return False
    return _read_at(runlog, tail.offset - len(tail.mark), len(tail.mark)) == tail.mark


def _read_at(path: Path, offset: int, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, offset))
            return f.read(size)
    except OSError:
        return b""


def _is_prefix(log: Path, runlog: Path, run_size: int, whole: bool = False) -> bool:
    """Whether `log` (a copy or the runner's tee) is the beginning of run.log (or all of it)."""
    try:
        size = log.stat().st_size
    except OSError:
        return False
    if size > run_size or (whole and size != run_size):
        return False
    head = min(size, COMPARE_BYTES)
    end = max(0, size - COMPARE_BYTES)
    return (_read_at(log, 0, head) == _read_at(runlog, 0, head)
            and _read_at(log, end, size - end) == _read_at(runlog, end, size - end))


def _start(ledger: Ledger, wt: Path, runlog: Path, st: os.stat_result,
           agent: str | None) -> _Tail | None:
    """A tail for run.log as it is now: resumed, new, or None when it is the runner's."""
    newest = _newest_logged(ledger, wt)
    if newest is not None:
        if newest.is_live and newest.backend != OBSERVED:
            return None
        log = Path(newest.log_path) if newest.log_path else None
        if newest.backend != OBSERVED and log and _is_prefix(log, runlog, st.st_size, whole=True):
            return None  # the finished runner's tee
        if newest.backend == OBSERVED and log and _is_prefix(log, runlog, st.st_size):
            return _resume(ledger, newest, st)
        if newest.backend == OBSERVED and newest.is_live:
            _finish_crash(ledger, _Tail(newest.id, 0, 0, b"", newest.started_at or time.time()),
                          "run.log was rewritten before its summary appeared")
    if st.st_size == 0:
        return None
    return _register(ledger, wt, runlog, st, agent)


def _newest_logged(ledger: Ledger, wt: Path) -> Experiment | None:
    return newest_in_worktree(ledger, str(wt), except_backend=IMPORTED)


def _resume(ledger: Ledger, exp: Experiment, st: os.stat_result) -> _Tail:
    """Pick an observed run up again (a restarted cockpit): re-read its copy, steps not re-sent."""
    copy = Path(exp.log_path)
    data = copy.read_bytes()
    tail = _Tail(exp.id, st.st_ino, len(data), data[-MARK_BYTES:], exp.started_at or time.time(),
                 done=not exp.is_live and exp.decision != "lost", summary_json=exp.summary_json)
    tail.parser.feed(data)
    steps = ledger.steps(exp.id)
    tail.max_step = steps[-1].step if steps else -1
    return tail


def _register(ledger: Ledger, wt: Path, runlog: Path, st: os.stat_result,
              agent: str | None) -> _Tail:
    name = agent or agent_for(ledger, wt)
    branch = quiet_git(git.current_branch, wt) or ""
    writer, writer_start = _writer_of(runlog)
    now = time.time()
    exp_id = ledger.register(
        actor="observer", tag=derived_tag(ledger, name, branch), agent=name, worktree=str(wt),
        branch=branch, commit_sha=quiet_git(git.head_sha, wt) or "",
        parent_sha=quiet_git(git.rev_parse, wt, "HEAD~1") or "",
        description=git.commit_subject(wt) or "observed run.log", backend=OBSERVED, status="running",
        reason="observed: started by the agent itself, not with `cockpit run`",
        runner_pid=writer, runner_start=writer_start, started_at=now, heartbeat_at=now)
    logs = ledger.path.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    copy = logs / f"{exp_id}.log"
    copy.write_bytes(b"")
    ledger.update(exp_id, log_path=str(copy))
    return _Tail(exp_id, st.st_ino, 0, b"", now)


def _advance(ledger: Ledger, tail: _Tail, runlog: Path, size: int, writer_gone: bool) -> None:
    """Read run.log's new bytes into the copy and the parser; steps, summary, finish."""
    fresh = False
    exp = ledger.get(tail.exp_id)
    try:
        with open(runlog, "rb") as src, open(exp.log_path, "ab") as copy:
            src.seek(tail.offset)
            while tail.offset < size:
                chunk = src.read(min(CHUNK, size - tail.offset))
                if not chunk:
                    break
                copy.write(chunk)
                for record in tail.parser.feed(chunk):
                    if record.step > tail.max_step:
                        _keep_step(tail, record)
                tail.mark = (tail.mark + chunk)[-MARK_BYTES:]
                tail.offset += len(chunk)
                fresh = True
    except OSError:
        return
    if tail.done:
        summary = _complete_summary(exp.log_path, tail) if fresh else None
        values = summary_columns(summary) if summary is not None else {}
        if values and values["summary_json"] != tail.summary_json:  # extra keys came late
            ledger.update(tail.exp_id, actor="observer", **values)
            tail.summary_json = values["summary_json"]
        return
    summary = _complete_summary(exp.log_path, tail)
    if tail.parser.failed:
        _finish_crash(ledger, tail, "FAIL in run.log (loss exploded)")
    elif summary is not None:
        _finish_ok(ledger, tail, summary)
    elif writer_gone:
        writer = f"the process writing run.log (pid {exp.runner_pid})" if exp.runner_pid else \
            "the process writing run.log"
        _finish_crash(ledger, tail, f"{writer} exited without a summary")
    elif fresh and time.time() - tail.last_write >= STEP_EVERY_S:
        _send_steps(ledger, tail)


def _complete_summary(copy: str, tail: _Tail) -> dict[str, Any] | None:
    """The summary block at the end of the log, once every upstream key is there and the last
    line is complete; None before."""
    if not tail.mark.endswith(b"\n") or b"---" not in _read_at(Path(copy), tail.offset - SUMMARY_WINDOW,
                                                               SUMMARY_WINDOW):
        return None
    parser = StreamParser(keep_records=False)
    parser.feed(_read_at(Path(copy), tail.offset - SUMMARY_WINDOW, SUMMARY_WINDOW))
    summary = parser.finish().summary
    if summary is None or [p for p in summary_problems(summary) if p.startswith("summary has no")]:
        return None
    return dict(summary)


def _bucket(record: StepRecord) -> int:
    if record.progress_pct is None:
        return record.step // 10
    return int(record.progress_pct * STEP_BUCKETS_PER_PCT)


def _keep_step(tail: _Tail, record: StepRecord) -> None:
    """Queue a step for the ledger: the newest one of each 0.1 % of progress, so a log read at
    once (post hoc) still gives the whole curve, in bounded rows."""
    if tail.unsent and _bucket(tail.unsent[-1]) == _bucket(record):
        tail.unsent[-1] = record
    else:
        tail.unsent.append(record)


def _send_steps(ledger: Ledger, tail: _Tail) -> None:
    steps, tail.unsent = tail.unsent, []
    tail.last_write = time.time()
    if not steps:
        ledger.add_steps(tail.exp_id, [])
        return
    t = round(time.time() - tail.started_at, 3)
    rows = [StepRow(step=s.step, t=t, progress_pct=s.progress_pct, loss=s.loss, lrm=s.lrm,
                    dt_ms=s.dt_ms, tok_per_sec=s.tok_per_sec, mfu_pct=s.mfu_pct,
                    remaining_s=s.remaining_s) for s in steps]
    last = steps[-1]
    tail.max_step = last.step
    ledger.add_steps(tail.exp_id, rows, progress_pct=last.progress_pct,
                     last_loss=finite(last.loss), remaining_s=last.remaining_s)


def _finish_ok(ledger: Ledger, tail: _Tail, summary: dict[str, Any]) -> None:
    _send_steps(ledger, tail)
    values = summary_columns(summary)
    val_bpb = finite(summary.get("val_bpb"))
    if val_bpb is None:
        values["crash_tail"] = "\n".join(tail.parser.tail())
    values["reason"] = ("observed: finished; the agent decides keep or discard itself"
                        if val_bpb is not None else "observed: summary has no usable val_bpb")
    _finish(ledger, tail.exp_id, values, None if val_bpb is not None else "crash",
            {"observed": True}, revive_lost=True)
    tail.done, tail.summary_json = True, values["summary_json"]


def _finish_crash(ledger: Ledger, tail: _Tail, reason: str) -> None:
    if tail.offset:
        _send_steps(ledger, tail)
    values = {"reason": f"observed: {reason}", "crash_tail": "\n".join(tail.parser.tail())}
    _finish(ledger, tail.exp_id, values, "crash",
            {"observed": True, "decision": "crash", "reason": reason}, revive_lost=False)
    tail.done = True


def _finish(ledger: Ledger, exp_id: int, values: dict[str, Any], decision: str | None,
            detail: dict[str, Any], revive_lost: bool) -> None:
    """Mark a live observed run finished (or, with `revive_lost`, one marked lost that turned out
    to finish), with `decision` only while results.tsv has given none.

    Compare-and-set on what was read: a results.tsv row imported (or a reap, or a kill) landing
    between the read and the write is never overwritten; the write is redone against the new state.
    """
    for _ in range(3):
        exp = ledger.get(exp_id)
        if not exp.is_live and not (revive_lost and exp.decision == "lost"):
            return
        decided = {} if exp.import_key else {"decision": decision}
        if ledger.transition(exp_id, {"status": exp.status, "decision": exp.decision,
                                      "import_key": exp.import_key},
                             event="finish", actor="observer",
                             detail={**detail, "was": exp.effective_decision},
                             status="finished", finished_at=time.time(), **values, **decided):
            return


def _writer_gone(ledger: Ledger, exp_id: int) -> bool:
    exp = ledger.get(exp_id)
    return bool(exp.runner_pid) and not same_process(exp.runner_pid, exp.runner_start)


def _writer_of(path: Path) -> tuple[int | None, float | None]:
    """The oldest live process holding `path` open for writing (Linux /proc), else (None, None)."""
    target, found = str(path), []
    try:
        pids = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return None, None
    for pid in pids:
        try:
            with os.scandir(f"/proc/{pid}/fd") as fds:
                hits = [fd.name for fd in fds if _readlink(fd.path) == target]
        except OSError:
            continue
        if any(_opened_for_writing(pid, fd) for fd in hits):
            start = process_identity(int(pid))
            if start is not None:
                found.append((start, int(pid)))
    if not found:
        return None, None
    start, writer = min(found)
    return writer, start


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


def _opened_for_writing(pid: str, fd: str) -> bool:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as info:
            for line in info:
                if line.startswith("flags:"):
                    return int(line.split()[1], 8) & 0o3 != 0  # O_WRONLY or O_RDWR
    except (OSError, ValueError, IndexError):
        pass
    return False


# ---------------------------------------------------------------------------
# Shared with app/observe/worktrees.py

def worktree_gone(ledger: Ledger, worktree: Path, agent: str | None = None) -> None:
    """A worktree vanished: its agents are gone, its live observed runs lost; never raises."""
    if ledger.read_only:
        return
    worktree = Path(os.path.abspath(worktree))
    names = [agent] if agent else [a.name for a in ledger.agents() if a.worktree == str(worktree)]
    for name in names:
        ledger.mark_agent_gone(name)
    with _LOCK:
        for key in [k for k in _TAILS if Path(k[1]).parent == worktree]:
            del _TAILS[key]
    for exp in ledger.live():
        if exp.backend == OBSERVED and exp.worktree == str(worktree):
            ledger.transition(exp.id, {"status": LIVE_STATUSES}, event="decide", actor="observer",
                              detail={"decision": "lost"}, status="finished", decision="lost",
                              finished_at=time.time(), reason="observed: its worktree was deleted")


def agent_for(ledger: Ledger, wt: Path) -> str:
    """The agent working in `wt`, else the worktree's folder name (as `cockpit run` does)."""
    return next((a.name for a in ledger.agents() if a.worktree == str(wt)), wt.name)


def quiet_git(fn: Any, *args: Any) -> Any:
    """A git fact, or None when git cannot tell (no commit yet, a vanished worktree)."""
    try:
        return fn(*args)
    except git.GitError:
        return None
