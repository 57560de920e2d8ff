"""Push attention to the human through apprise URLs (ntfy, Slack, Discord, Telegram, email, webhooks).

Batched and rate-limited: the first item of a kind goes out at once, the ones that follow within
MIN_INTERVAL_S wait and leave together as one digest. Every message names the repository and, per
item, the experiment, agent, val_bpb and delta; all text is sanitized (agents write descriptions
and names, panes show anything) and sent as plain text.

Usage:
    notifier = Notifier(settings.notify, settings.notify_events, repo="nanochat")
    notifier.submit(item); notifier.flush()        # flush() again every tick: sends due digests
    notifier.close()                               # waits for messages in flight
"""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from app.logs.textsafe import sanitize
from app.supervisor.attention import AttentionItem

MIN_INTERVAL_S = 60.0  # at most one message per event kind this often
MAX_DIGEST_ITEMS = 20  # a digest lists this many items, then says how many more
TITLES = {"new-best": "new best", "review": "review pending", "waiting": "agent waiting for input",
          "stuck": "agent stuck", "crash-streak": "crash streak", "supervisor": "supervisor"}

Sender = Callable[[str, str], bool]  # (title, body) -> delivered


def clean(text: str, width: int = 300) -> str:
    """One line of untrusted text made safe for any notification service."""
    line = " ".join(sanitize(text).split())
    return line if len(line) <= width else line[: width - 1] + "…"


def describe(item: AttentionItem, repo: str) -> str:
    """One item as a line: what happened, then repository, experiment, agent, val_bpb and delta."""
    exp = f"#{item.experiment_id}" if item.experiment_id is not None else "—"
    val = "—" if item.val_bpb is None else f"{item.val_bpb:.6f}"
    delta = "—" if item.delta is None else f"{item.delta:+.6f}"
    about = f" | {clean(item.detail, 160)}" if item.detail else ""
    return clean(f"{item.title} | repository {repo} | experiment {exp} | agent {item.agent or '—'} "
                 f"| val_bpb {val} | delta {delta}{about}", 800)


def apprise_sender(urls: Sequence[str]) -> Sender:
    """A sender for these apprise URLs (unknown or malformed URLs raise ValueError now)."""
    import apprise  # imported by the supervisor only: ~0.2 s

    target = apprise.Apprise()
    for url in urls:
        if not target.add(url):
            raise ValueError(f"not a notification URL apprise understands: {clean(url, 80)}")

    def send(title: str, body: str) -> bool:
        return bool(target.notify(title=title, body=body, body_format=apprise.NotifyFormat.TEXT))

    return send


class Notifier:
    def __init__(self, urls: Sequence[str], events: Iterable[str], repo: str, *,
                 sender: Sender | None = None, min_interval_s: float = MIN_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.repo = clean(repo, 80)
        self.events = frozenset(events)
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.enabled = bool(urls)
        self._send = sender or (apprise_sender(urls) if urls else None)
        self._queued: dict[str, list[AttentionItem]] = defaultdict(list)
        self._last_sent: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cockpit-notify")
        self._lock = threading.Lock()
        self.failures = 0  # messages no URL took

    def submit(self, item: AttentionItem) -> bool:
        """Queue an item if its kind is one to send; True if queued."""
        if not self.enabled or item.kind not in self.events:
            return False
        self._queued[item.kind].append(item)
        return True

    def flush(self, force: bool = False) -> list[Future[bool]]:
        """Send, in the background, every kind whose queue is due (all, with `force`: the last
        words of a stopping supervisor); the messages' futures."""
        now = self.clock()
        out = []
        for kind, items in list(self._queued.items()):
            last = self._last_sent.get(kind)
            if not items or (not force and last is not None and now - last < self.min_interval_s):
                continue
            self._last_sent[kind] = now
            self._queued[kind] = []
            out.append(self._pool.submit(self._deliver, *self.message(kind, items)))
        return out

    def message(self, kind: str, items: Sequence[AttentionItem]) -> tuple[str, str]:
        what = TITLES.get(kind, kind)
        if len(items) == 1:
            title = f"[{self.repo}] {what}: {items[0].title}"
        else:
            title = f"[{self.repo}] {what}: {len(items)} in the last minutes"
        lines = [describe(item, self.repo) for item in items[:MAX_DIGEST_ITEMS]]
        if len(items) > MAX_DIGEST_ITEMS:
            lines.append(f"… and {len(items) - MAX_DIGEST_ITEMS} more (cockpit attention)")
        return clean(title, 250), "\n".join(lines)

    def _deliver(self, title: str, body: str) -> bool:
        assert self._send is not None
        try:
            delivered = self._send(title, body)
        except Exception:
            delivered = False
        with self._lock:
            self.failures += not delivered
        return delivered

    def close(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)
