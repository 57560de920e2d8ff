"""app/logs/curve.py: a run's loss curve from its log's step lines."""
from __future__ import annotations

from pathlib import Path

from app.logs import curve
from app.logs.curve import curve_points


def _step(step: int, pct: float, loss: float) -> str:
    return (f"step {step:05d} ({pct:.1f}%) | loss: {loss:.6f} | lrm: 1.00 | dt: 100ms | "
            f"tok/sec: 1,000 | mfu: 1.0% | epoch: 1 | remaining: 10s")


def test_points_from_step_lines_in_carriage_return_chunks(tmp_path: Path) -> None:
    log = tmp_path / "run.log"
    text = "\r".join(_step(i, i * 10.0, 9.0 - i) for i in range(1, 4)) + "\n---\nval_bpb: 1.0\n"
    log.write_text("warming up\n" + text)
    assert curve_points(log) == [(10.0, 8.0), (20.0, 7.0), (30.0, 6.0)]


def test_no_log_or_a_huge_one_gives_no_curve(tmp_path: Path, monkeypatch) -> None:
    log = tmp_path / "run.log"
    log.write_text(_step(1, 50.0, 3.0) + "\n")
    assert curve_points(None) == []
    monkeypatch.setattr(curve, "CURVE_FROM_LOG_MAX_BYTES", 10)
    assert curve_points(log) == []
