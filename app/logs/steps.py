"""One step line of train.py's output: `step 00042 (13.7%) | loss: 3.2 | ...`, fields parsed or None."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

STEP_HEAD = re.compile(  # `step 00042 (13.7%) |`: number, optional progress, then `|` or the end
    r"\s*step\s+(\d{1,30})\s*(?:\(\s*([^()%|]*?)\s*%\s*\))?\s*(?:\||\Z)"
)
MISSING_VALUES = ("n/a", "na", "-", "none", "")  # a step field not measured (nan is a value)

# ---------------------------------------------------------------------------
# Step lines


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One `step NNNNN (x%) | key: value | ...` segment; fields missing or unreadable are None."""

    step: int
    progress_pct: float | None = None
    loss: float | None = None
    lrm: float | None = None
    dt_ms: float | None = None
    tok_per_sec: float | None = None
    mfu_pct: float | None = None
    epoch: int | None = None
    remaining_s: float | None = None
    extra: dict[str, str] = field(default_factory=dict)  # fork-specific fields, raw text


def to_float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def to_int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:  # also raised for ints of thousands of digits
        return None


def to_ms(text: str) -> float | None:
    """`312ms`, `1.5s` or a bare number of milliseconds -> milliseconds."""
    if text.endswith("ms"):
        return to_float(text[:-2])
    if text.endswith("s"):
        seconds = to_float(text[:-1])
        return None if seconds is None else seconds * 1000
    return to_float(text)


def to_s(text: str) -> float | None:
    """`259s`, `900ms` or a bare number of seconds -> seconds."""
    if text.endswith("ms"):
        millis = to_float(text[:-2])
        return None if millis is None else millis / 1000
    return to_float(text.removesuffix("s"))


_KNOWN_FIELDS = {  # field name in the step line -> (position after progress_pct in StepRecord, parser)
    "loss": (0, to_float),
    "lrm": (1, to_float),
    "dt": (2, to_ms),
    "tok/sec": (3, lambda v: to_float(v.replace(",", ""))),
    "mfu": (4, lambda v: to_float(v.removesuffix("%"))),
    "epoch": (5, to_int),
    "remaining": (6, to_s),
}


def parse_step_line(text: str) -> StepRecord | None:
    """Parse one step segment; None when `text` is not a step line. Never raises."""
    head = STEP_HEAD.match(text)
    return None if head is None else step_record(text, head)


def step_record(text: str, head: re.Match[str]) -> StepRecord:
    values: list[float | int | None] = [None] * len(_KNOWN_FIELDS)
    extra: dict[str, str] = {}
    for item in text[head.end() :].split("|"):
        name, colon, raw = item.partition(":")
        name, raw = name.strip(), raw.strip()
        if not colon or not name:
            continue
        known = _KNOWN_FIELDS.get(name)
        if known is None:
            extra[name] = raw
        elif raw.lower() not in MISSING_VALUES:  # `mfu: n/a` (ROCm forks): missing, not an error
            # the first word only: a crash may glue its traceback onto the last field
            values[known[0]] = known[1](raw.split(maxsplit=1)[0] if raw else raw)
    pct = head.group(2)
    loss, lrm, dt_ms, tok_per_sec, mfu_pct, epoch, remaining_s = values
    return StepRecord(int(head.group(1)), None if pct is None else to_float(pct), loss=loss, lrm=lrm,
                      dt_ms=dt_ms, tok_per_sec=tok_per_sec, mfu_pct=mfu_pct,
                      epoch=None if epoch is None else int(epoch), remaining_s=remaining_s,
                      extra=extra)


def split_fail(segment: str) -> tuple[str, bool]:
    """Separate a trailing `FAIL` (upstream prints it right after the last step, same line)."""
    stripped = segment.rstrip()
    if not stripped.endswith("FAIL"):
        return segment, False
    before = stripped[:-4]
    if not before.strip():
        return "", True
    if before[-1].isspace() and before.lstrip().startswith("step"):
        return before, True
    return segment, False
