"""app.observe.watch with real watchfiles on real directories."""
from __future__ import annotations

import asyncio
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.observe.watch import (
    ResultsTsvChanged,
    RunLogChanged,
    TrainPyChanged,
    WatchEvent,
    WorktreeGone,
    WorktreeWatcher,
)
from waiting import wait_for

TIMEOUT = 5.0  # seconds to wait for an expected event
QUIET = 0.4  # seconds of silence taken to mean "no event is coming"


class Collector:
    """Runs a watcher's blocking loop in a thread and queues what it yields."""

    def __init__(self, watcher: WorktreeWatcher) -> None:
        self.watcher = watcher
        self.events: queue.Queue[WatchEvent] = queue.Queue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for batch in self.watcher:
                for event in batch:
                    self.events.put(event)
        except BaseException as exc:  # surfaced by the test through self.error
            self.error = exc

    def expect(self, wanted: WatchEvent, timeout: float = TIMEOUT) -> list[WatchEvent]:
        """Wait for `wanted`; return what came before it."""
        seen, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=0.05)
            except queue.Empty:
                continue
            if event == wanted:
                return seen
            seen.append(event)
        raise AssertionError(f"no {wanted} within {timeout}s; saw {seen}")

    def prime(self, *roots: Path) -> None:
        """Write run.log in each root until its event comes back (the watch is running, however
        slowly it started), then let the stragglers settle and drop them."""
        for root in roots:
            deadline = time.monotonic() + TIMEOUT
            while True:
                (root / "run.log").write_text(f"probe {time.monotonic()}\n")
                try:
                    self.expect(RunLogChanged(root), timeout=0.3)
                    break
                except AssertionError:
                    if time.monotonic() > deadline:
                        raise
        self.drain()

    def drain(self, seconds: float = QUIET) -> list[WatchEvent]:
        time.sleep(seconds)
        seen = []
        while not self.events.empty():
            seen.append(self.events.get())
        return seen


def make_worktree(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "train.py").write_text("DEPTH = 8\n")
    return path


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    return make_worktree(tmp_path / "a"), make_worktree(tmp_path / "b")


@pytest.fixture
def collector(roots: tuple[Path, Path]) -> Iterator[Collector]:
    collector = Collector(WorktreeWatcher(roots))
    collector.prime(*roots)
    yield collector
    collector.watcher.stop()
    collector.thread.join(timeout=3)
    assert not collector.thread.is_alive(), "the watcher did not stop"
    assert collector.error is None


def test_root_files_become_events(collector: Collector, roots: tuple[Path, Path]) -> None:
    a, b = roots
    (a / "train.py").write_text("DEPTH = 12\n")
    assert collector.expect(TrainPyChanged(a)) == []
    with (b / "run.log").open("a") as log:
        log.write("step 00001 | loss 9.0\n")
    collector.expect(RunLogChanged(b))
    (a / "results.tsv").write_text("commit\tval_bpb\tmemory_gb\tstatus\tdescription\n")
    collector.expect(ResultsTsvChanged(a))
    (a / "notes.md").write_text("not watched")
    assert collector.drain() == []


def test_editor_style_replace_is_a_train_py_change(collector: Collector, roots: tuple[Path, Path]) -> None:
    a, _ = roots
    (a / ".train.py.tmp").write_text("DEPTH = 16\n")
    (a / ".train.py.tmp").replace(a / "train.py")
    collector.expect(TrainPyChanged(a))


def test_subdirectories_are_not_watched(collector: Collector, roots: tuple[Path, Path]) -> None:
    a, _ = roots
    (a / "sub" / "train.py").write_text("x")
    (a / "sub" / "run.log").write_text("x")
    (a / "sub" / "deeper").mkdir()
    (a / "sub" / "deeper" / "results.tsv").write_text("x")
    assert collector.drain() == []


def test_deleted_worktree_is_gone_and_others_keep_going(collector: Collector,
                                                        roots: tuple[Path, Path]) -> None:
    a, b = roots
    (a / "run.log").write_text("x")
    collector.expect(RunLogChanged(a))
    shutil.rmtree(a)
    seen = collector.expect(WorktreeGone(a))
    assert all(event.worktree == a for event in seen)
    assert collector.watcher.roots == {b}
    (b / "train.py").write_text("DEPTH = 4\n")
    collector.expect(TrainPyChanged(b))
    assert WorktreeGone(a) not in collector.drain(0.1)


def test_roots_added_and_removed_while_running(collector: Collector, roots: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    a, b = roots
    c = make_worktree(tmp_path / "c")
    collector.watcher.add(c)

    def noticed() -> bool:  # a change made during the restart may be missed: write until one is seen
        if TrainPyChanged(c) in collector.drain(0):
            return True
        (c / "train.py").write_text(f"DEPTH = {time.monotonic()}\n")
        return False

    wait_for(noticed, TIMEOUT, interval=0.3, message="an added root was never watched")
    collector.watcher.remove(b)
    collector.prime(a, c)  # the watch restarted without b
    (b / "train.py").write_text("DEPTH = 2\n")
    (a / "train.py").write_text("DEPTH = 3\n")
    assert collector.expect(TrainPyChanged(a)) == []
    assert TrainPyChanged(b) not in collector.drain()
    collector.watcher.add(tmp_path / "never-existed")
    collector.expect(WorktreeGone(tmp_path / "never-existed"))
    assert collector.watcher.roots == {a, c}


def test_stop_ends_an_empty_watcher(tmp_path: Path) -> None:
    watcher = WorktreeWatcher()
    collector = Collector(watcher)
    worktree = make_worktree(tmp_path / "late")
    watcher.add(worktree)
    collector.prime(worktree)  # a root added to an empty watcher is watched
    started = time.monotonic()
    watcher.stop()
    collector.thread.join(timeout=3)
    assert not collector.thread.is_alive() and time.monotonic() - started < 1.5
    assert watcher.stopped and collector.error is None


async def test_async_loop(roots: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = roots
    watcher = WorktreeWatcher([a])
    seen: asyncio.Queue[WatchEvent] = asyncio.Queue()

    async def consume() -> None:
        async for batch in watcher:
            for event in batch:
                seen.put_nowait(event)

    async def expect(wanted: WatchEvent) -> None:
        while await asyncio.wait_for(seen.get(), TIMEOUT) != wanted:
            pass

    async def write_until_seen(path: Path, wanted: WatchEvent) -> None:
        """Rewrite `path` until `wanted` comes back: a watch (re)starting may miss a change."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            path.write_text(f"{time.monotonic()}\n")
            try:
                return await asyncio.wait_for(expect(wanted), 0.3)
            except asyncio.TimeoutError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {wanted} within {TIMEOUT}s") from None

    task = asyncio.create_task(consume())
    await write_until_seen(a / "train.py", TrainPyChanged(a))
    watcher.add(b)
    await write_until_seen(b / "results.tsv", ResultsTsvChanged(b))
    shutil.rmtree(b)
    await expect(WorktreeGone(b))
    watcher.stop()
    await asyncio.wait_for(task, 3)
    assert task.done() and task.exception() is None
