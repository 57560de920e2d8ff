"""Notifications (app/supervisor/notify.py) from a real supervisor to a loopback HTTP server through
apprise's json:// URL: a new best arrives with repository, experiment, agent, val_bpb and delta,
more within the interval leave as one digest, and nothing an agent wrote carries an escape
sequence to the phone."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from app.config import Settings
from app.ledger.store import Ledger
from app.supervisor.attention import AttentionItem
from app.supervisor.notify import Notifier
from runnerhelpers import cli, make_project
from supervisorhelpers import running_supervisor
from waiting import wait_for

HOSTILE = "\x1b[31mred\x1b[0m \x1b]8;;http://evil.example\x07link\x1b]8;;\x07 \x9b2J\u202eevil\x07"


class Inbox:
    """A loopback HTTP server that keeps every JSON body posted to it, with its arrival time."""

    def __init__(self) -> None:
        self.messages: list[tuple[float, dict]] = []
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                inbox.messages.append((time.monotonic(), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def inbox():
    server = Inbox()
    yield server
    server.close()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / ".autoresearch" / "ledger.db"
    with Ledger(path) as ledger:
        keep(ledger, 1.0, "baseline")
    return path


def keep(ledger: Ledger, val_bpb: float, description: str) -> int:
    return ledger.register(tag="t1", agent="ada", branch="autoresearch/t1-ada", status="finished",
                           decision="keep", val_bpb=val_bpb, description=description,
                           finished_at=time.time())


def test_new_bests_reach_a_loopback_server_rate_limited_and_without_escapes(
        ledger_path: Path, inbox: Inbox) -> None:
    settings = Settings(notify=(inbox.url,), notify_events=("new-best",))
    notifier = Notifier(settings.notify, settings.notify_events, "nanochat", min_interval_s=1.5)
    with running_supervisor(ledger_path, settings, notifier=notifier, repo="nanochat"):
        with Ledger(ledger_path) as ledger:
            first = keep(ledger, 0.98, f"lower lr {HOSTILE}")
        wait_for(lambda: inbox.messages, 10)
        _, message = inbox.messages[0]
        text = message["title"] + "\n" + message["message"]
        for part in ("nanochat", f"#{first}", "agent ada", "val_bpb 0.980000", "delta -0.020000",
                     "lower lr"):
            assert part in text, (part, text)
        assert not any(c in text for c in "\x1b\x07\x9b\u202e"), repr(text)

        with Ledger(ledger_path) as ledger:  # two more within the interval: one digest, later
            second, third = keep(ledger, 0.97, "second"), keep(ledger, 0.96, "third")
        wait_for(lambda: len(inbox.messages) >= 2, 10)
        (t0, _), (t1, digest) = inbox.messages[:2]
        assert t1 - t0 >= 1.4, "the second message came before the interval was over"
        assert f"#{second}" in digest["message"] and f"#{third}" in digest["message"]
        assert "2 in the last minutes" in digest["title"]
        time.sleep(0.5)
        assert len(inbox.messages) == 2


def test_nothing_is_sent_twice_after_a_restart(ledger_path: Path, inbox: Inbox) -> None:
    settings = Settings(notify=(inbox.url,), notify_events=("new-best",))
    with Ledger(ledger_path) as ledger:
        keep(ledger, 0.98, "better")
    with running_supervisor(ledger_path, settings):
        wait_for(lambda: inbox.messages, 10)
    assert len(inbox.messages) == 1  # the new best ("supervisor stopped" was not asked for)
    with running_supervisor(ledger_path, settings) as again:  # it still is a new best: known
        wait_for(lambda: again.items, 10)
        time.sleep(1.5)  # ticks pass: nothing more is sent
    assert len(inbox.messages) == 1


def test_digest_force_and_kinds() -> None:
    sent: list[tuple[str, str]] = []
    now = [0.0]
    notifier = Notifier(["json://unused"], ["stuck", "supervisor"], "repo",
                        sender=lambda t, b: sent.append((t, b)) or True, clock=lambda: now[0])
    item = AttentionItem("stuck", "stuck:ada:1", "agent ada: no experiment for 20 min", agent="ada")
    assert not notifier.submit(AttentionItem("review", "review:1", "#1 awaits review"))
    assert notifier.submit(item)
    for future in notifier.flush():
        future.result()
    notifier.submit(AttentionItem("stuck", "stuck:bob:1", "agent bob: no experiment", agent="bob"))
    now[0] = 30.0
    assert notifier.flush() == []  # within the minute: waits
    now[0] = 61.0
    for future in notifier.flush():
        future.result()
    notifier.submit(AttentionItem("supervisor", "supervisor:stop", "supervisor stopped"))
    notifier.submit(AttentionItem("stuck", "stuck:ada:2", "agent ada: again", agent="ada"))
    for future in notifier.flush(force=True):  # the last words of a stopping supervisor
        future.result()
    notifier.close()
    titles = [title for title, _ in sent]
    assert titles[0] == "[repo] agent stuck: agent ada: no experiment for 20 min"
    assert "experiment — | agent ada | val_bpb — | delta —" in sent[0][1]
    assert titles[1] == "[repo] agent stuck: agent bob: no experiment"
    assert sorted(titles[2:]) == ["[repo] agent stuck: agent ada: again",
                                  "[repo] supervisor: supervisor stopped"]


def test_cockpit_notify_test_sends_to_the_configured_urls(tmp_path: Path, inbox: Inbox) -> None:
    main = make_project(tmp_path)
    assert cli("notify", "--test", cwd=main)[0] == 2  # no URLs yet: said, exit 2
    config = main / ".autoresearch" / "config.toml"
    config.parent.mkdir(exist_ok=True)
    config.write_text("notify = ['not-a-service://x']\n")
    code, _, err = cli("notify", "--test", cwd=main)
    assert code == 2 and "not a notification URL" in err
    config.write_text(f"notify = ['{inbox.url}']\n")
    code, out, _ = cli("notify", "--test", cwd=main)
    assert code == 0 and "sent to 1 URL" in out
    assert inbox.messages[0][1]["title"] == "[project] cockpit notify --test"


def test_an_unreachable_url_is_logged_and_the_supervisor_goes_on(ledger_path: Path) -> None:
    settings = Settings(notify=("json://127.0.0.1:1",), notify_events=("new-best",))  # refused
    with running_supervisor(ledger_path, settings) as supervisor:
        with Ledger(ledger_path) as ledger:
            keep(ledger, 0.98, "better")
        wait_for(lambda: "could not be sent" in supervisor.out.getvalue(), 20)
        with Ledger(ledger_path) as ledger:  # still at work: the next run is recorded as news
            keep(ledger, 0.97, "better still")
        wait_for(lambda: any(item.key.startswith("new-best") and item.val_bpb == 0.97
                             for item in supervisor.items), 10)
