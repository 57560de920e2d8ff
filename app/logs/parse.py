"""Parse train.py output: `\\r`-separated step lines, the `---` summary block, `FAIL`, a crash tail.

Usage:
    parser = StreamParser()
    for chunk in child_output:             # raw bytes, split anywhere
        for record in parser.feed(chunk):  # steps completed by this chunk
            ...
        parser.last_step                   # latest step record, at any time
    result = parser.finish()               # summary, failed, tail, problems

Memory stays constant whatever the input: a segment (text between `\\r`/`\\n` separators) longer
than MAX_SEGMENT_CHARS is cut to that length and reported, never buffered whole.
"""

from __future__ import annotations

import codecs
import copy
import math
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass

from app.logs.crashtail import TAIL_LINES, TRACEBACK, Traceback, start_of_traceback
from app.logs.steps import (
    STEP_HEAD,
    StepRecord,
    parse_step_line,
    split_fail,
    step_record,
    to_float,
    to_int,
)
from app.logs.textsafe import sanitize

# ---------------------------------------------------------------------------
# Limits and the output contract

MAX_SEGMENT_CHARS = 64 * 1024  # longest segment kept; the rest of a longer one is dropped
SUMMARY_VALUE_COLUMN = 18  # train.py pads `key:` so values start here; text further left ends the block
TAIL_LINE_CHARS = 1000  # each tail line is cut to this many characters
MAX_SUMMARY_KEYS = 1000  # summary keys kept; more are dropped and reported
MAX_SUMMARY_VALUE_CHARS = 4096  # a longer summary value is cut to this many characters
REQUIRED_SUMMARY_KEYS = (  # upstream's summary keys, in upstream's order
    "val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
    "total_tokens_M", "num_steps", "num_params_M", "depth",
)

_SUMMARY_LINE = re.compile(r"([A-Za-z_][\w.\-]*)\s*:\s*(\S.*)")  # a line of the block: `key: value`


# ---------------------------------------------------------------------------
# Summary block


def parse_summary_value(text: str) -> float | int | str:
    """`7000` -> int, `0.93`/`nan`/`inf` -> float, anything else -> the text itself."""
    as_int = to_int(text)
    if as_int is not None:
        return as_int
    as_float = to_float(text)
    return text if as_float is None else as_float


def summary_problems(summary: Mapping[str, float | int | str] | None) -> list[str]:
    """Why a summary cannot be trusted: absent, missing upstream keys, val_bpb not a finite number."""
    if summary is None:
        return ["no summary block (no `---` line after training)"]
    problems = [f"summary has no {key}" for key in REQUIRED_SUMMARY_KEYS if key not in summary]
    val_bpb = summary.get("val_bpb")
    if isinstance(val_bpb, str):
        problems.append(f"val_bpb is not a number: {val_bpb[:40]!r}")
    elif isinstance(val_bpb, float) and not math.isfinite(val_bpb):
        problems.append(f"val_bpb is {val_bpb}")
    return problems


def summary_pair(line: str) -> tuple[str, float | int | str] | None:
    """`key: value` of a summary line, or None when the line ends the block.

    A number is always a value; text counts only in train.py's aligned column, so what other programs
    print after the summary (`nanobind: leaked 3 instances!`, `Warning: ...`) never becomes a metric.
    """
    match = _SUMMARY_LINE.fullmatch(line)
    if match is None:
        return None
    value = parse_summary_value(match.group(2))
    if isinstance(value, str) and match.start(2) < SUMMARY_VALUE_COLUMN:
        return None
    return match.group(1), value


# ---------------------------------------------------------------------------
# Streaming parser


@dataclass
class ParseResult:
    """Everything a finished (or cut-off) log says."""

    summary: dict[str, float | int | str] | None  # key: value lines after the last `---`, in order
    failed: bool  # a `FAIL` line was seen
    last_step: StepRecord | None
    num_step_records: int
    tail: list[str]  # from the last traceback through its exception line, else the last lines; sanitized
    problems: list[str]  # what is wrong with the log, in words


class StreamParser:
    """Incremental parser: feed raw bytes as they arrive, call finish() once at EOF.

    With `keep_records=False` feed() returns no records and only the latest step is parsed (on
    demand, through `last_step`): whole-file parsing is then several times faster.
    """

    def __init__(self, keep_records: bool = True) -> None:
        self._keep_records = keep_records
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending: list[str] = []  # pieces of the segment still open (at most MAX_SEGMENT_CHARS)
        self._pending_kept = 0  # characters held in those pieces
        self._pending_len = 0  # the open segment's true length, including dropped characters
        self._line_segments = 0  # non-blank segments seen on the current physical line
        self._line_last = ""  # the last non-blank segment of the current physical line
        self._tail: deque[str] = deque(maxlen=TAIL_LINES)
        self._traceback: Traceback | None = None
        self._summary: dict[str, float | int | str] | None = None
        self._in_summary = False
        self._truncated = 0
        self._longest_truncated = 0
        self._summary_overflow = False
        self._replaced_bytes = False
        self._result: ParseResult | None = None
        self._last_step_text = ""  # the latest completed step segment
        self._last_step: StepRecord | None = None  # its parsed record, once parsed
        self.num_step_records = 0
        self.failed = False  # a FAIL line was seen
        self.lines_seen = 0  # physical lines ended so far (an unterminated last one counts at finish)
        self.bytes_seen = 0

    def feed(self, data: bytes) -> list[StepRecord]:
        """Consume a chunk; return the step records it completed, in order."""
        if self._result is not None:
            raise RuntimeError("StreamParser.feed() after finish()")
        self.bytes_seen += len(data)
        return self._consume(self._decoder.decode(data))

    @property
    def last_step(self) -> StepRecord | None:
        """The latest completed step record (cheap: parsed at most once per new step)."""
        if self._last_step is None and self._last_step_text:
            self._last_step = parse_step_line(self._last_step_text)
        return self._last_step

    def flush(self) -> list[StepRecord]:
        """At the end of the input: close the open segment (a log cut off mid-line ends in one)
        and return the step records that completes, so the last step is not lost."""
        if self._result is not None:
            return []
        records = self._consume(self._decoder.decode(b"", final=True))
        self._close_segment(*self._join_pending(""), records)
        return records if self._keep_records else []

    def finish(self) -> ParseResult:
        """Flush the last open segment and line; return the result (same object on repeat calls)."""
        if self._result is None:
            self.flush()
            if self._line_segments:
                self._end_line()
            self._result = ParseResult(
                summary=self._summary,
                failed=self.failed,
                last_step=self.last_step,
                num_step_records=self.num_step_records,
                tail=self.tail(),
                problems=self._problems(),
            )
        return self._result

    def tail(self) -> list[str]:
        """The crash tail so far: from the last traceback through its exception line and what follows it,
        else the last lines (each `\\r`-rewritten line as its last segment); sanitized."""
        lines = list(self._tail)
        traceback = self._traceback
        pending = "".join(self._pending)
        open_line = (pending if pending.strip() else self._line_last).rstrip()
        if open_line:
            lines = (lines + [open_line])[-TAIL_LINES:]
            if TRACEBACK in open_line or traceback is None:
                traceback = start_of_traceback(open_line)
            else:
                traceback = copy.deepcopy(traceback)
                traceback.add(open_line)
        if traceback is not None:
            lines = traceback.lines()
        return [sanitize(line)[:TAIL_LINE_CHARS] for line in lines]

    # -- internals ----------------------------------------------------------

    def _consume(self, text: str) -> list[StepRecord]:
        if not text:
            return []
        if not self._replaced_bytes and "\ufffd" in text:
            self._replaced_bytes = True
        records: list[StepRecord] = []
        lines = text.split("\n")
        last_index = len(lines) - 1
        for index, line in enumerate(lines):
            segments = line.split("\r")
            if len(segments) == 1 and index == last_index:
                self._hold(segments[0])
                break
            first, first_len = self._join_pending(segments[0])
            if len(segments) > 1:
                self._close_segment(first, first_len, records)
                for segment in segments[1:-1]:
                    self._close_segment(segment, len(segment), records)
                if index == last_index:
                    self._hold(segments[-1])
                    break
                first, first_len = segments[-1], len(segments[-1])
            self._close_segment(first, first_len, records)
            self._end_line()
        return records

    def _hold(self, piece: str) -> None:
        """Add `piece` to the open segment, keeping at most MAX_SEGMENT_CHARS characters of it."""
        self._pending_len += len(piece)
        room = MAX_SEGMENT_CHARS - self._pending_kept
        if piece and room > 0:
            kept = piece[:room]
            self._pending.append(kept)
            self._pending_kept += len(kept)

    def _join_pending(self, piece: str) -> tuple[str, int]:
        """Close the open segment with `piece`: its kept text and its true length."""
        if not self._pending_len:
            return piece, len(piece)
        self._hold(piece)
        joined, length = "".join(self._pending), self._pending_len
        self._pending, self._pending_kept, self._pending_len = [], 0, 0
        return joined, length

    def _close_segment(self, segment: str, true_len: int, records: list[StepRecord]) -> None:
        if true_len > MAX_SEGMENT_CHARS:
            segment = segment[:MAX_SEGMENT_CHARS]
            self._truncated += 1
            self._longest_truncated = max(self._longest_truncated, true_len)
        if not segment or segment.isspace():
            return
        self._line_segments += 1
        self._line_last = segment
        segment, failed = split_fail(segment)
        if failed:
            self.failed = True
        head = STEP_HEAD.match(segment)
        if head is None:
            return
        if self._in_summary:  # steps after `---`: that line was not the final summary
            self._in_summary, self._summary = False, None
        self.num_step_records += 1
        self._last_step_text, self._last_step = segment, None
        if self._keep_records:
            self._last_step = step_record(segment, head)
            records.append(self._last_step)

    def _end_line(self) -> None:
        self.lines_seen += 1
        line = self._line_last.rstrip()
        single = self._line_segments == 1
        self._line_segments, self._line_last = 0, ""
        if not line:
            self._in_summary = False
            return
        self._tail.append(line[: 4 * TAIL_LINE_CHARS])  # room for escapes that sanitize() removes
        if TRACEBACK in line:
            self._traceback = start_of_traceback(line[: 4 * TAIL_LINE_CHARS])
        elif self._traceback is not None:
            self._traceback.add(line[: 4 * TAIL_LINE_CHARS])
        line = line.lstrip()
        if single and line == "---":
            self._in_summary, self._summary = True, {}
        elif self._in_summary:
            self._add_summary_line(line)

    def _add_summary_line(self, line: str) -> None:
        pair = summary_pair(line)
        if pair is None or self._summary is None:
            self._in_summary = False  # the block ends at the first line that is not `key: value`
            return
        key, value = pair
        if key not in self._summary and len(self._summary) >= MAX_SUMMARY_KEYS:
            self._summary_overflow = True
            return
        self._summary[key] = sanitize(value)[:MAX_SUMMARY_VALUE_CHARS] if isinstance(value, str) else value

    def _problems(self) -> list[str]:
        problems = []
        if self._truncated:
            problems.append(
                f"{self._truncated} over-long line(s) truncated: longest {self._longest_truncated:,} "
                f"characters without a line break, kept the first {MAX_SEGMENT_CHARS:,}"
            )
        if self._replaced_bytes:
            problems.append("log is not valid UTF-8: bad bytes shown as U+FFFD")
        if self._summary_overflow:
            problems.append(f"summary has more than {MAX_SUMMARY_KEYS} keys: the rest were dropped")
        return problems + summary_problems(self._summary)
