"""Waiting for a condition, the one way tests synchronise (never a fixed sleep).

`wait_for` (threads, subprocesses, files, tmux, the ledger) and `wait_until` (a Textual app under
Pilot: the app keeps running while the test waits) poll `predicate` until it returns something
truthy, return that value, and fail with an AssertionError after `timeout` seconds.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
TIMEOUT = 10.0  # seconds: generous on a loaded 2-core CI machine; a met condition returns at once


def _expired(timeout: float, message: str) -> AssertionError:
    return AssertionError(f"condition not met within {timeout} s" + (f": {message}" if message else ""))


def wait_for(predicate: Callable[[], T], timeout: float = TIMEOUT, *, interval: float = 0.05,
             message: str = "") -> T:
    """Call `predicate` every `interval` seconds until it returns a truthy value; return it."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise _expired(timeout, message)
        time.sleep(interval)
    return value


async def wait_until(pilot: Any, predicate: Callable[[], T], timeout: float = TIMEOUT, *,
                     interval: float = 0.02, message: str = "") -> T:
    """`wait_for` for a Textual Pilot: the app processes messages and timers between checks."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() >= deadline:
            raise _expired(timeout, message)
        await pilot.pause(interval)
    return value
