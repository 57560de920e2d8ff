"""A run's loss curve from its log: (progress %, loss) of every step line, for runs whose steps the
ledger did not sample (imported or observed ones). The views draw it; they never parse a log."""
from __future__ import annotations

from pathlib import Path

from app.logs.parse import StreamParser
from app.logs.steps import StepRecord

CURVE_FROM_LOG_MAX_BYTES = 256 * 1024 * 1024  # logs larger than this are not parsed for a curve
READ_BYTES = 1 << 20

Point = tuple[float, float]  # (progress %, loss)


def curve_points(path: Path | None, by_step: bool = False) -> list[Point]:
    """(progress %, loss) of the step lines in the log at `path` ((step, loss) with `by_step`);
    [] for no log or one over CURVE_FROM_LOG_MAX_BYTES."""
    if path is None or path.stat().st_size > CURVE_FROM_LOG_MAX_BYTES:
        return []
    parser = StreamParser()
    points: list[Point] = []
    with path.open("rb") as log:
        while chunk := log.read(READ_BYTES):
            points += _points(parser.feed(chunk), by_step)
    return points + _points(parser.flush(), by_step)  # a log cut off mid-line ends in a step


def _points(records: list[StepRecord], by_step: bool) -> list[Point]:
    return [(float(r.step) if by_step else r.progress_pct, r.loss) for r in records  # type: ignore[misc]
            if r.loss is not None and (by_step or r.progress_pct is not None)]
