"""Watch agent worktree roots and turn raw file changes into plain cockpit events.

Only the root of each worktree is watched (not recursive): train.py, run.log and results.tsv live
there, and whatever an agent writes below (checkpoints, data, caches) stays silent.

Usage:
    watcher = WorktreeWatcher([worktree_a, worktree_b])
    for events in watcher:                  # blocking, in a thread; watcher.stop() ends it
        ...
    async for events in watcher:            # or in an asyncio task (watchfiles' awatch)
        ...
    watcher.add(worktree_c)                 # from any thread, while either loop runs
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from watchfiles import Change, awatch, watch

DEBOUNCE_MS = 200  # longest a burst of changes is grouped before it is reported
STEP_MS = 50  # quiet time after a change before the group is reported
IDLE_CHECK_MS = 1000  # with no change, wake this often to notice roots that vanished


@dataclass(frozen=True)
class TrainPyChanged:
    worktree: Path


@dataclass(frozen=True)
class RunLogChanged:
    worktree: Path


@dataclass(frozen=True)
class ResultsTsvChanged:
    worktree: Path


@dataclass(frozen=True)
class WorktreeGone:
    """The root was deleted (or never existed); it is no longer watched."""

    worktree: Path


WatchEvent = TrainPyChanged | RunLogChanged | ResultsTsvChanged | WorktreeGone
_EVENT_FOR_NAME: dict[str, Callable[[Path], WatchEvent]] = {
    "train.py": TrainPyChanged, "run.log": RunLogChanged, "results.tsv": ResultsTsvChanged}
_ORDER = {TrainPyChanged: 0, RunLogChanged: 1, ResultsTsvChanged: 2, WorktreeGone: 3}


class _WatchOptions(TypedDict):
    """The keyword arguments both loops pass to watchfiles' watch/awatch."""

    debounce: int
    step: int
    force_polling: bool | None
    rust_timeout: int
    yield_on_timeout: bool
    recursive: bool


def _absolute(root: Path | str) -> Path:
    """Absolute and normalised, symlinks kept: events name roots the way the caller did."""
    return Path(os.path.abspath(root))


class WorktreeWatcher:
    """Yields lists of events for a changing set of worktree roots until stop() is called.

    Adding or removing a root restarts the underlying watch with the new set; changes made during
    that restart (milliseconds) can be missed. Iterate from one consumer at a time; a stopped
    watcher stays stopped.
    """

    def __init__(self, roots: Iterable[Path | str] = (), *, debounce_ms: int = DEBOUNCE_MS,
                 step_ms: int = STEP_MS, force_polling: bool | None = None) -> None:
        self._roots = {_absolute(root) for root in roots}
        self._lock = threading.Lock()
        self._wake = threading.Event()  # makes the running watch return: to restart or to stop
        self._stopped = threading.Event()
        self._step_s = step_ms / 1000
        self._options = _WatchOptions(debounce=debounce_ms, step=step_ms, force_polling=force_polling,
                                      rust_timeout=IDLE_CHECK_MS, yield_on_timeout=True, recursive=False)

    @property
    def roots(self) -> frozenset[Path]:
        with self._lock:
            return frozenset(self._roots)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def add(self, root: Path | str) -> None:
        """Watch another root; one that does not exist is reported as WorktreeGone."""
        self._change_roots(_absolute(root), add=True)

    def remove(self, root: Path | str) -> None:
        self._change_roots(_absolute(root), add=False)

    def stop(self) -> None:
        """End iteration (within about STEP_MS), so a thread or task using the watcher can exit."""
        self._stopped.set()
        self._wake.set()

    def _change_roots(self, root: Path, add: bool) -> None:
        with self._lock:
            if (root in self._roots) == add:
                return
            (self._roots.add if add else self._roots.discard)(root)
        self._wake.set()

    # -----------------------------------------------------------------------
    # The two loops: the same rounds, one blocking and one async

    def __iter__(self) -> Iterator[list[WatchEvent]]:
        while not self._stopped.is_set():
            roots, gone = self._begin_round()
            if gone:
                yield gone
            if not roots:
                self._wake.wait(IDLE_CHECK_MS / 1000)
                continue
            try:
                for changes in watch(*roots, watch_filter=self._filter(roots), stop_event=self._wake,
                                     **self._options):
                    events = self._translate(changes)
                    if events:
                        yield events
                    if self._wake.is_set():
                        break
            except FileNotFoundError:  # a root deleted just before the watch began: reported next round
                if all(root.is_dir() for root in roots):
                    raise

    def __aiter__(self) -> AsyncIterator[list[WatchEvent]]:
        return self.aevents()

    async def aevents(self) -> AsyncIterator[list[WatchEvent]]:
        """The async twin of iterating the watcher, for an asyncio worker."""
        while not self._stopped.is_set():
            roots, gone = self._begin_round()
            if gone:
                yield gone
            if not roots:
                await self._sleep_until_woken(IDLE_CHECK_MS / 1000)
                continue
            try:
                async with aclosing(awatch(*roots, watch_filter=self._filter(roots), stop_event=self._wake,
                                           **self._options)) as batches:
                    async for changes in batches:
                        events = self._translate(changes)
                        if events:
                            yield events
                        if self._wake.is_set():
                            break
            except FileNotFoundError:  # a root deleted just before the watch began: reported next round
                if all(root.is_dir() for root in roots):
                    raise

    async def _sleep_until_woken(self, seconds: float) -> None:
        for _ in range(max(1, round(seconds / self._step_s))):
            if self._wake.is_set():
                return
            await asyncio.sleep(self._step_s)

    # -----------------------------------------------------------------------
    # From raw changes to events

    def _begin_round(self) -> tuple[list[Path], list[WatchEvent]]:
        """Arm the wake event, then take the roots to watch, dropping (and reporting) vanished ones."""
        self._wake.clear()
        if self._stopped.is_set():  # stop() raced the clear: keep the watch from blocking
            self._wake.set()
        with self._lock:
            gone = sorted(root for root in self._roots if not root.is_dir())
            self._roots.difference_update(gone)
            return sorted(self._roots), [WorktreeGone(root) for root in gone]

    @staticmethod
    def _filter(roots: list[Path]) -> Callable[[Change, str], bool]:
        root_names = {str(root) for root in roots}
        return lambda _change, path: os.path.basename(path) in _EVENT_FOR_NAME or path in root_names

    def _translate(self, changes: set[tuple[Change, str]]) -> list[WatchEvent]:
        with self._lock:
            roots = set(self._roots)
        touched = {Path(raw) for _change, raw in changes} & roots
        vanished = {root for root in (touched if changes else roots) if not root.is_dir()}
        events: set[WatchEvent] = {WorktreeGone(root) for root in vanished}
        for _change, raw in changes:
            path = Path(raw)
            if path.parent in roots - vanished and path.name in _EVENT_FOR_NAME:
                events.add(_EVENT_FOR_NAME[path.name](path.parent))
        if vanished:
            with self._lock:
                self._roots.difference_update(vanished)
        return sorted(events, key=lambda event: (str(event.worktree), _ORDER[type(event)]))
