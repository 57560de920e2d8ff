"""app/run/procs.py on real processes: identity, and the one TERM-then-KILL stop."""
from __future__ import annotations

import subprocess
import sys
import time

from app.run.procs import process_identity, same_process, stop_if_same, term_then_kill

IGNORES_TERM = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")


def _start(code: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_term_is_enough_for_a_process_that_obeys_it() -> None:
    proc = _start("import time; print('ready', flush=True); time.sleep(60)")
    start = process_identity(proc.pid)
    t0 = time.monotonic()
    assert stop_if_same(proc.pid, start, grace_s=30)
    assert proc.wait(timeout=10) == -15 and time.monotonic() - t0 < 10  # no 30 s grace waited


def test_kill_follows_after_the_grace_when_term_is_ignored() -> None:
    proc = _start(IGNORES_TERM)
    start = process_identity(proc.pid)
    t0 = time.monotonic()
    assert stop_if_same(proc.pid, start, grace_s=0.3)
    assert proc.wait(timeout=10) == -9 and time.monotonic() - t0 >= 0.3


def test_a_recycled_or_dead_pid_is_never_signalled() -> None:
    proc = _start(IGNORES_TERM)
    start = process_identity(proc.pid)
    assert start is not None and not same_process(proc.pid, start + 1.0)
    assert not stop_if_same(proc.pid, start + 1.0, grace_s=0.1)  # another process by that pid
    assert proc.poll() is None
    proc.kill()
    proc.wait()
    assert not stop_if_same(proc.pid, start, grace_s=0.1)


def test_term_then_kill_order_and_nothing_to_term() -> None:
    calls: list[str] = []
    assert term_then_kill(lambda: calls.append("term") is None, lambda: calls.append("kill"),
                          lambda: True, grace_s=5) is True
    assert calls == ["term", "kill"]  # kill always comes: it spares what is gone itself
    calls.clear()
    assert term_then_kill(lambda: False, lambda: calls.append("kill"), lambda: False, grace_s=5) is False
    assert calls == ["kill"]  # nothing to TERM: no wait
