"""`cockpit supervise`: the one headless process per ledger that watches while nobody looks.

One thread owns the ledger connection and runs the loop: worktree events (from a watcher thread,
handled the moment they arrive) and a tick every second for what is due: the heartbeat, lost runs
and their orphaned train.py, agents' liveness, panes waiting for input, attention and
notifications. SIGTERM/SIGINT end it cleanly (heartbeat row says `stopped`); a ledger deleted or
replaced under it ends it with a clear message (exit 3), never by recreating an empty one.

Usage:
    Supervisor(ledger_path, settings, repo="nanochat").run()   # blocks; raises SupervisorRunning
"""
from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TextIO

from app import git
from app.config import Settings
from app.errors import EXIT_INFRA, EXIT_OK
from app.ledger import supervisor as rows
from app.ledger.store import LEDGER_ERRORS, Ledger, LedgerError, LedgerGone
from app.logs.textsafe import sanitize
from app.observe.watch import WatchEvent, WorktreeWatcher
from app.run.procs import process_identity
from app.supervisor import attention, upkeep
from app.supervisor.ingest import Ingest
from app.supervisor.notify import Notifier
from app.supervisor.process import Lock, acquire
from app.supervisor.status import attention_with

TICK_S = 1.0  # the loop wakes at least this often
HEARTBEAT_S = 5.0  # the supervisor's row is rewritten this often (attention says "no supervisor"
                   # after attention.HEARTBEAT_STALE_S without one)
UPKEEP_S = 3.0  # lost runs, orphans, agents' liveness, observed writers that died
PANES_S = 5.0  # agents' panes captured this often (tmux calls)
ATTENTION_S = 5.0  # attention recomputed at least this often (stuck agents need no ledger change)
UPKEEP_ERRORS: tuple[type[Exception], ...] = (*LEDGER_ERRORS, git.GitError, OSError)


class Supervisor:
    def __init__(self, ledger_path: Path, settings: Settings, *, repo: str,
                 tmux_socket: str | None = None, notifier: Notifier | None = None,
                 out: TextIO | None = None) -> None:
        self.ledger_path = Path(ledger_path)
        self.settings = settings
        self.repo = repo
        self.out = out or sys.stdout
        self.notifier = notifier or Notifier(settings.notify, settings.notify_events, repo)
        self.panes = upkeep.PaneWatch(attention.compile_prompts(settings.attention_prompts),
                                      settings.waiting_idle_s, tmux_socket)
        self._events: queue.Queue[list[WatchEvent] | None] = queue.Queue()
        self._stop = threading.Event()
        self._watcher = WorktreeWatcher()
        self._due: dict[str, float] = {}
        self._notified: set[str] = set()
        self._row_waiting: dict[str, dict[str, Any]] = {}
        self._data_version = -1
        self._failures = 0  # notifications that failed, as last logged
        self.items: list[attention.AttentionItem] = []

    def say(self, line: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        self.out.write(f"{stamp} {' '.join(sanitize(line).split())}\n")
        self.out.flush()

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self._events.put(None)

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Hold the lock and supervise until asked to stop; the exit status."""
        lock = acquire(self.ledger_path)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.request_stop)
            signal.signal(signal.SIGINT, self.request_stop)
        ledger: Ledger | None = None
        why, code = "stopped", EXIT_OK
        try:
            ledger = Ledger(self.ledger_path)
            self._start(ledger)
            self._loop(ledger)
        except LedgerGone as exc:
            why, code = f"stopped: {exc}", EXIT_INFRA
        except LedgerError as exc:
            why, code = f"cannot use the ledger: {exc}", EXIT_INFRA
        except Exception as exc:  # a bug: said in the row and to the notify URLs, then raised
            why, code = f"crashed: {type(exc).__name__}: {exc}", EXIT_INFRA
            raise
        finally:
            self._finish(ledger, why, code, lock)
        return code

    def _start(self, ledger: Ledger) -> None:
        previous = rows.read_supervisor(ledger)
        self._notified = set(previous.notified) if previous else set()
        rows.write_supervisor(ledger, pid=os.getpid(), pid_start=process_identity(os.getpid()),
                              host=socket.gethostname(), state="running", message="",
                              started_at=time.time(), waiting={}, notified=sorted(self._notified))
        self.say(f"supervisor started (pid {os.getpid()}) on {self.ledger_path}")
        threading.Thread(target=self._watch, name="cockpit-supervisor-watch", daemon=True).start()

    def _watch(self) -> None:
        for events in self._watcher:
            self._events.put(events)

    def _loop(self, ledger: Ledger) -> None:
        ingest = Ingest(ledger, self.say)
        next_tick = 0.0
        while not self._stop.is_set():
            try:
                events = self._events.get(timeout=max(0.0, next_tick - time.monotonic()))
            except queue.Empty:
                events = None
            if events:
                self._guard("worktree events", ingest.handle, events)
            if time.monotonic() >= next_tick and not self._stop.is_set():
                self._guard("tick", self._tick, ledger, ingest)
                next_tick = time.monotonic() + TICK_S

    def _due_now(self, what: str, every_s: float) -> bool:
        now = time.monotonic()
        if now < self._due.get(what, 0.0):
            return False
        self._due[what] = now + every_s
        return True

    def _tick(self, ledger: Ledger, ingest: Ingest) -> None:
        ledger.check_identity()
        version = ledger.data_version()
        changed = version != self._data_version
        self._data_version = version
        if changed or self._due_now("agents", ATTENTION_S):
            self._guard("agents", self._follow_agents, ledger, ingest)
        self._guard("worktrees", ingest.tick)
        if self._due_now("upkeep", UPKEEP_S):
            for line in self._guard("lost runs", upkeep.reap, ledger) or []:
                self.say(line)
            for line in self._guard("agent liveness", upkeep.liveness, ledger) or []:
                self.say(line)
        if self._due_now("panes", PANES_S):
            self._guard("panes", self.panes.check, ledger.agents())
        if changed or self.panes.waiting != self._row_waiting or self._due_now("attention", ATTENTION_S):
            self._guard("attention", self._attend, ledger)
        if self.panes.waiting != self._row_waiting or self._due_now("heartbeat", HEARTBEAT_S):
            self._row_waiting = dict(self.panes.waiting)
            self._guard("heartbeat", self._beat, ledger)
        self.notifier.flush()
        if self.notifier.failures != self._failures:
            self.say(f"notifications: {self.notifier.failures - self._failures} message(s) could "
                     f"not be sent to {len(self.settings.notify)} URL(s)")
            self._failures = self.notifier.failures

    def _beat(self, ledger: Ledger) -> None:
        rows.write_supervisor(ledger, state="running", waiting=self._row_waiting,
                              notified=sorted(self._notified))

    def _follow_agents(self, ledger: Ledger, ingest: Ingest) -> None:
        watched = {a.worktree: a.name for a in ledger.agents()
                   if a.worktree and a.state not in ("removed", "gone")}
        added, removed = ingest.set_agents(watched)
        for root in removed:
            self._watcher.remove(root)
        for root in added:
            self._watcher.add(root)

    def _attend(self, ledger: Ledger) -> None:
        now = time.time()
        me = rows.SupervisorRow(state="running", heartbeat_at=now, waiting=self.panes.waiting)
        self.items = attention_with(ledger, self.settings, now, me)
        keys = {item.key for item in self.items}
        for item in self.items:
            if item.key not in self._notified:
                self.notifier.submit(item)
                self.say(f"attention: {item.title}")
        if keys != self._notified:
            self._notified = keys
            rows.write_supervisor(ledger, notified=sorted(keys))

    def _guard(self, what: str, work: Callable[..., Any], *args: Any) -> Any:
        """Run one piece of upkeep; its trouble is logged, never fatal (a vanished ledger is)."""
        try:
            return work(*args)
        except LedgerGone:
            raise
        except UPKEEP_ERRORS as exc:
            self.say(f"{what}: {type(exc).__name__}: {exc}")
            return None

    def _finish(self, ledger: Ledger | None, why: str, code: int, lock: Lock) -> None:
        self._watcher.stop()
        self.say(f"supervisor {why}")
        self.notifier.submit(attention.AttentionItem("supervisor", "supervisor:stop",
                                                     f"supervisor {why}", since=time.time()))
        self.notifier.flush(force=True)
        self.notifier.close()
        if ledger is not None:
            with suppress(*LEDGER_ERRORS):  # if the ledger is what failed, the log says so
                rows.write_supervisor(ledger, state="error" if code else "stopped",
                                      message=why if code else "", waiting={})
            ledger.close()
        lock.release()
