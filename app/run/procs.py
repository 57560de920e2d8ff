"""Process identity: a pid plus its start time, so a recycled pid is never mistaken for ours.

The ledger records (pid, create_time) for every runner and child. Before signalling a process
that we did not start in this very process, we check that the pid still names the same process.
"""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import psutil

# create_time comes from /proc/<pid>/stat in clock ticks: two reads of one process agree exactly,
# two different processes sharing a pid are at least a tick apart.
START_TOLERANCE_S = 0.005
STOP_POLL_S = 0.05  # how often a stop looks whether TERM was enough


def process_identity(pid: int | None) -> float | None:
    """The start time of a live process, or None if there is none (zombies count as gone)."""
    if not pid or pid <= 0:
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def same_process(pid: int | None, start: float | None) -> bool:
    """True if `pid` is alive and is the process that started at `start`."""
    if start is None:
        return False
    now = process_identity(pid)
    return now is not None and abs(now - start) <= START_TOLERANCE_S


def signal_group_if_same(pid: int | None, start: float | None, sig: int) -> bool:
    """Signal the process group led by `pid` (or the process alone if it leads none) only if
    the pid still names the process that started at `start`; True if a signal was sent."""
    if not same_process(pid, start):
        return False
    assert pid is not None
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def term_then_kill(term: Callable[[], bool], kill: Callable[[], object], gone: Callable[[], bool],
                   grace_s: float) -> bool:
    """The one way the cockpit stops processes: `term()` sends TERM (False: nothing to signal, no
    wait), then up to `grace_s` for `gone()`, then `kill()` sends KILL to whatever is left (it
    must spare what is gone). True if TERM was sent."""
    sent = term()
    if sent:
        deadline = time.monotonic() + grace_s
        while not gone() and time.monotonic() < deadline:
            time.sleep(STOP_POLL_S)
    kill()
    return sent


def stop_if_same(pid: int | None, start: float | None, grace_s: float) -> bool:
    """TERM the group of a process we did not start, KILL it after `grace_s`; True if signalled."""
    return term_then_kill(lambda: signal_group_if_same(pid, start, signal.SIGTERM),
                          lambda: signal_group_if_same(pid, start, signal.SIGKILL),
                          lambda: not same_process(pid, start), grace_s)
