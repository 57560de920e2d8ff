"""Caps on text that agents write (descriptions, hypotheses, notes): a 50 MB description must not
freeze the TUI or bloat the ledger.

Text typed on the command line over the cap is refused with a message (nothing is lost: the
agent says it shorter); text read from files the cockpit does not control (a results.tsv row, a
commit subject, a log) is cut with a visible marker. The ledger cuts whatever still comes in over
the cap, so no path stores more.
"""
from __future__ import annotations

from typing import Any

TEXT_CAP = 4096  # bytes (UTF-8) stored for a description, hypothesis, note or reason
CAPS = {"description": TEXT_CAP, "hypothesis": TEXT_CAP, "reason": TEXT_CAP, "text": TEXT_CAP,
        "category": 100, "crash_tail": 4 * TEXT_CAP}
_MARK = " … [cut: {n} more bytes]"
_MARK_ROOM = 48  # bytes kept free for the mark


def over_cap(text: str, cap: int = TEXT_CAP) -> int:
    """How many bytes `text` is over `cap` (0: within it)."""
    return max(0, len(text.encode("utf-8", "replace")) - cap)


def cut(text: str, cap: int = TEXT_CAP) -> str:
    """`text` within `cap` UTF-8 bytes, marked where it was cut (never inside a character)."""
    extra = over_cap(text, cap)
    if not extra:
        return text
    data = text.encode("utf-8", "replace")
    head = data[:max(0, cap - _MARK_ROOM)].decode("utf-8", "ignore")
    return head + _MARK.format(n=len(data) - len(head.encode()))


def capped(values: dict[str, Any]) -> dict[str, Any]:
    """`values` with every capped text field cut to its cap."""
    return {k: cut(v, CAPS[k]) if k in CAPS and isinstance(v, str) else v
            for k, v in values.items()}
