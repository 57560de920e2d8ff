"""The detail screen's data, loaded in a thread: the experiment, its events and notes, its loss
curve and the tag best's to compare (from the ledger's sampled steps, else from the log through
app.logs.curve: the screen parses nothing)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from app.ledger.store import Event, Experiment, Ledger, Note
from app.logs.curve import Point, curve_points


@dataclass(frozen=True)
class DetailData:
    experiment: Experiment
    events: list[Event]
    notes: list[Note]
    curve: list[Point]
    reference: Experiment | None  # the tag's best kept run, for the curve overlay
    reference_curve: list[Point]
    log_file: Path | None  # the log as found on disk (see find_log)


def find_log(log_path: str, ledger_path: Path) -> Path | None:
    """The log file as recorded, else in the logs folder beside the ledger: a copied
    .autoresearch folder opened with --ledger still finds its logs."""
    if not log_path:
        return None
    recorded = Path(log_path)
    if not recorded.is_absolute():
        recorded = ledger_path.parent / recorded
    for candidate in (recorded, ledger_path.parent / "logs" / recorded.name):
        if candidate.is_file():
            return candidate
    return None


def experiment_curve(ledger: Ledger, exp: Experiment, log_file: Path | None,
                     cache: dict[tuple, list[Point]], by_step: bool = False) -> list[Point]:
    """The sampled steps from the ledger, else (none, or the single dot that observed runs recorded
    before they kept every step) the log's step lines, cached per log size: (progress %, loss), or
    (step, loss) with `by_step`."""
    points = [(float(s.step) if by_step else s.progress_pct, s.loss) for s in ledger.steps(exp.id)
              if s.loss is not None and (by_step or s.progress_pct is not None)]
    if len(points) > 1 or log_file is None:
        return points  # type: ignore[return-value]
    try:
        key = (log_file, log_file.stat().st_size, by_step)
    except OSError:
        return []
    if key not in cache:
        cache[key] = curve_points(log_file, by_step)
    return cache[key] or points  # type: ignore[return-value]


def load_detail(ledger: Ledger, exp_id: int, cache: dict[tuple, list[Point]]) -> DetailData:
    exp = ledger.get(exp_id)
    log_file = find_log(exp.log_path, ledger.path)
    reference = ledger.best(tag=exp.tag, comparable=not exp.is_foreign)
    if reference is not None and reference.id == exp.id:
        reference = None  # the best run has nothing better to be compared with
    reference_curve = experiment_curve(ledger, reference, find_log(reference.log_path, ledger.path),
                                       cache) if reference else []
    return DetailData(
        experiment=exp, events=ledger.events(exp_id), notes=ledger.notes(experiment_id=exp_id),
        curve=experiment_curve(ledger, exp, log_file, cache), reference=reference,
        reference_curve=reference_curve, log_file=log_file)
