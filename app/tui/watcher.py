"""Watching the agents' worktrees for the TUI's display: live train.py diff stats, and agents'
states as refreshed now and then. It records nothing: vanilla runs, results.tsv imports, deleted
worktrees and liveness are the supervisor's (app/supervisor/), so two open cockpits never record a
run twice and nothing depends on a cockpit being open.

`AgentWatch.start(node)` runs two async workers on `node`: one iterates app.observe.watch's
WorktreeWatcher (watchfiles' awatch: non-recursive on the worktree roots, debounced), one ticks
every second. Their blocking work (git, the ledger) runs in ONE thread of its own, which owns the
ledger connection, so no thread of the shared executor is held and the ledger is used from one
thread only. `stop()` ends both promptly; the agents panel calls it when it unmounts.

Results are posted as messages: `AgentDiff` (an agent's uncommitted train.py change),
`AgentStates` (states the ledger does not say yet, never written: an agent whose worktree
vanished shows `gone` before the supervisor records it), `ActionFinished` (problems, each said
once). The ledger is opened read-only.
"""
from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.errors import CockpitError
from app.tui.messages import ActionFinished, AgentDiff, AgentStates

if TYPE_CHECKING:
    from textual.dom import DOMNode

    from app.ledger.store import Ledger
    from app.observe.watch import WatchEvent, WorktreeWatcher

TICK_S = 1.0  # how often diff stats are re-checked (stat calls; git only on a change)
UPKEEP_EVERY_S = 3.0  # how often agents' states are refreshed for display


def _key(path: str | Path) -> Path:
    """Absolute, symlinks kept: the way app.observe.watch names the roots it reports."""
    return Path(os.path.abspath(path))


def git_dir(worktree: Path) -> Path:
    """The worktree's own git directory: `.git`, or where a linked worktree's `.git` file points."""
    dot_git = worktree / ".git"
    try:
        text = dot_git.read_text(errors="replace").strip() if dot_git.is_file() else ""
    except OSError:
        return dot_git
    if text.startswith("gitdir:"):
        target = Path(text.removeprefix("gitdir:").strip())
        return target if target.is_absolute() else worktree / target
    return dot_git


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def diff_signature(worktree: Path, gitdir: Path) -> tuple:
    """Changes whenever the diff against the branch head may have: an edit, a commit, a reset.
    A commit leaves train.py alone, so the index and HEAD's reflog are looked at too."""
    return tuple(_stamp(path) for path in (worktree / "train.py", gitdir / "index", gitdir / "HEAD",
                                           gitdir / "logs" / "HEAD"))


class AgentWatch:
    """Watches the worktrees of the agents it is given (see the module docstring)."""

    def __init__(self, ledger_path: Path, *, post: Callable[[Any], object]) -> None:
        self.ledger_path = Path(ledger_path)
        self._post = post  # thread-safe (a widget's post_message)
        self._lock = threading.Lock()
        self._agents: dict[Path, str] = {}  # watched worktree -> agent name
        self._fresh: set[Path] = set()  # roots added since the last tick: synced in full by it
        self._watcher: WorktreeWatcher | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cockpit-watch")
        self._stopped = False
        # what follows belongs to the pool's thread
        self._ledger: Ledger | None = None
        self._git_dirs: dict[Path, Path] = {}
        self._signatures: dict[Path, tuple] = {}
        self._upkept_at = 0.0
        self._states: dict[str, str] = {}
        self._reported: set[str] = set()

    # -- the UI thread's side -----------------------------------------------------------------

    def set_agents(self, worktrees: dict[str, str]) -> None:
        """Watch exactly these worktrees (path -> agent name); new ones are synced on the next tick."""
        wanted = {_key(path): name for path, name in worktrees.items() if path}
        with self._lock:
            added = wanted.keys() - self._agents.keys()
            removed = self._agents.keys() - wanted.keys()
            self._agents = wanted
            self._fresh = (self._fresh | added) - removed
        if self._watcher is not None:
            for root in removed:
                self._watcher.remove(root)
            for root in added:
                self._watcher.add(root)

    def start(self, node: DOMNode) -> None:
        if self._stopped:
            return
        from app.observe.watch import WorktreeWatcher  # watchfiles: imported once the screen is up

        with self._lock:
            self._watcher = WorktreeWatcher(self._agents)
        node.run_worker(self._watch_loop(), name="worktree watch", group="agent-watch",
                        exclusive=True, exit_on_error=False)
        node.run_worker(self._tick_loop(), name="agent upkeep", group="agent-upkeep",
                        exclusive=True, exit_on_error=False)

    def stop(self) -> None:
        """End both loops (the watcher within ~50 ms) and let the thread close the ledger."""
        if self._stopped:
            return
        self._stopped = True
        if self._watcher is not None:
            self._watcher.stop()
        self._pool.submit(self._close)
        self._pool.shutdown(wait=False)

    async def _watch_loop(self) -> None:
        assert self._watcher is not None
        async for events in self._watcher:
            if not await self._in_thread(self._handle, events):
                return

    async def _tick_loop(self) -> None:
        while await self._in_thread(self._tick):
            await asyncio.sleep(TICK_S)

    async def _in_thread(self, work: Callable[..., None], *args: Any) -> bool:
        """Run `work` in the watch thread; False once stopped."""
        if self._stopped:
            return False
        await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)
        return not self._stopped

    # -- the watch thread's side --------------------------------------------------------------

    def _name(self, worktree: Path) -> str | None:
        with self._lock:
            return self._agents.get(worktree)

    def _handle(self, events: list[WatchEvent]) -> None:
        from app.observe.watch import RunLogChanged, TrainPyChanged, WorktreeGone

        for event in events:
            worktree = event.worktree
            name = self._name(worktree)
            if name is None:  # no longer an agent's
                continue
            if isinstance(event, (TrainPyChanged, RunLogChanged)):  # runs commit first
                self._guard(self._diff, worktree, name, isinstance(event, TrainPyChanged))
            elif isinstance(event, WorktreeGone):
                self._gone(worktree, name)

    def _tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            agents = dict(self._agents)
            fresh, self._fresh = self._fresh, set()
        for worktree, name in agents.items():
            if worktree.is_dir():
                self._guard(self._diff, worktree, name, worktree in fresh)
        if now - self._upkept_at >= UPKEEP_EVERY_S:
            self._upkept_at = now
            self._guard(self._upkeep)

    def _diff(self, worktree: Path, name: str, force: bool) -> None:
        from app import git

        gitdir = self._git_dirs.get(worktree) or self._git_dirs.setdefault(worktree, git_dir(worktree))
        signature = diff_signature(worktree, gitdir)
        if not force and self._signatures.get(worktree) == signature:
            return
        self._signatures[worktree] = signature
        try:
            stat = git.diff_stat(worktree)
        except git.GitError:
            stat = None
        self._post(AgentDiff(name, str(worktree), stat))

    def _gone(self, worktree: Path, name: str) -> None:
        self._signatures.pop(worktree, None)
        self._git_dirs.pop(worktree, None)
        self._post(AgentDiff(name, str(worktree), None))
        self._upkept_at = 0.0  # show it gone on the next tick

    def _upkeep(self) -> None:
        """Agents whose state the ledger does not say yet (gone, exited): shown, never written."""
        ledger = self._open()
        if ledger is None:
            return
        from app.agents.lifecycle import refresh_agent

        states = {}
        for agent in ledger.agents():
            state = refresh_agent(ledger, agent).state
            if state != agent.state:
                states[agent.name] = state
        if states != self._states:
            self._states = states
            self._post(AgentStates(states))

    def _open(self) -> Ledger | None:
        if self._ledger is None:
            from app.ledger.store import Ledger, LedgerError

            try:
                self._ledger = Ledger(self.ledger_path, read_only=True)
            except LedgerError:
                return None
        return self._ledger

    def _close(self) -> None:
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None

    def _guard(self, work: Callable[..., None], *args: Any) -> None:
        """Run one piece of work; git, ledger and file trouble is said once, never fatal."""
        from app.ledger.store import LEDGER_ERRORS

        expected: tuple[type[Exception], ...] = (CockpitError, *LEDGER_ERRORS, OSError)
        try:
            work(*args)
        except expected as exc:
            if isinstance(exc, LEDGER_ERRORS):
                self._close()  # reopened on the next use
            self._report(f"{type(exc).__name__}: {exc}")

    def _report(self, problem: str) -> None:
        if problem not in self._reported:
            self._reported.add(problem)
            self._post(ActionFinished("worktree watch", None, error=problem))
