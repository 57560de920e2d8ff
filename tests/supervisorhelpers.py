"""A real supervisor (app/supervisor/daemon.py) in a thread of the test process, for tests that
need what it records (vanilla runs, agents gone, attention) next to a TUI or a notify server."""
from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.config import Settings
from app.supervisor.daemon import Supervisor
from app.supervisor.notify import Notifier
from waiting import wait_for


@contextmanager
def running_supervisor(ledger_path: Path, settings: Settings | None = None, *,
                       notifier: Notifier | None = None, repo: str = "project") -> Iterator[Supervisor]:
    """Start a supervisor on `ledger_path`, wait for its heartbeat row, stop it on exit."""
    from app.ledger.store import Ledger
    from app.ledger.supervisor import read_supervisor

    supervisor = Supervisor(ledger_path, settings or Settings(), repo=repo, notifier=notifier,
                            out=io.StringIO())
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(supervisor.run()), daemon=True)
    thread.start()

    def started() -> bool:
        if codes:
            raise AssertionError(f"the supervisor exited ({codes[0]}): {supervisor.out.getvalue()}")
        with Ledger(ledger_path, read_only=True) as ledger:
            row = read_supervisor(ledger)
        return row is not None and row.state == "running"

    wait_for(started, 20)
    try:
        yield supervisor
    finally:
        supervisor.request_stop()
        thread.join(20)
        assert not thread.is_alive(), "the supervisor did not stop"
