"""A run's loss curve from its log: (progress %, loss) of every step line, for runs whose steps the
ledger did not sample (imported or observed ones). The views draw it; they never parse a log."""
from __future__ import annotations

from pathlib import Path

from app.logs.parse import StreamParser

CURVE_FROM_LOG_MAX_BYTES = 256 * 1024 * 1024  # logs larger than this are not parsed for a curve
READ_BYTES = 1 << 20

Point = tuple[float, float]  # (progress %, loss)


def curve_points(path: Path | None) -> list[Point]:
    """(progress %, loss) of the step lines in the log at `path`; [] for no log or one over
    CURVE_FROM_LOG_MAX_BYTES."""
    if path is None or path.stat().st_size > CURVE_FROM_LOG_MAX_BYTES:
        return []
    parser = StreamParser()
    points: list[Point] = []
    with path.open("rb") as log:
        while chunk := log.read(READ_BYTES):
            points += [(r.progress_pct, r.loss) for r in parser.feed(chunk)
                       if r.progress_pct is not None and r.loss is not None]
    return points
