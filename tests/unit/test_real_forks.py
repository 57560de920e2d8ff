"""Every file of ../shared/data/real-runs/forks/ (see its README): each results.tsv imports with the
row counts and the best kept val_bpb a careful reading of the file gives, or is refused with a
message that says why; each run.log parses with the step count, last step and val_bpb it holds.

The expected figures were read off the files by hand (statuses counted, the smallest kept val_bpb
found, section rows and oddities noted), not produced by the importer.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from app.logs.parse import StreamParser
from app.observe.tsv import TsvFormatError, read_results_tsv
from realdata import REAL_RUNS, parse_file
from runnerhelpers import cli

FORKS = REAL_RUNS / "forks"

# file -> rows imported, (keep, discard, crash), best kept val_bpb, line of the best, lines skipped
TSV_READINGS = {
    "JKeller45__autoresearch-rocm__results.tsv": (8, (3, 5, 0), 1.730440, 5, []),
    # two crash rows (val_bpb 99.0 -> missing), three rows in MB (9328.2 -> 9.1 GB)
    "NTTLuke__autoresearch-mlx__results.tsv": (10, (7, 1, 2), 1.157991, 11, []),
    # 3 section rows skipped; the space-separated row (line 23) is read
    "blueberry-llm__autoresearch-windows__results.tsv": (20, (10, 10, 0), 1.270597, 7, [8, 13, 19]),
    "digital-rain-tech__autoresearch-mlx__results.tsv": (12, (11, 1, 0), 1.415683, 13, []),
    "dowlingwong__autoresearch-macos__results.tsv": (4, (2, 2, 0), 0.998000, 3, []),
    # exp0..exp100 with `exp` for commit; the one `baseline` row is a discard until mapped
    "elementalcollision__autoresearch-cuda__results_climbmix_results.tsv":
        (101, (23, 71, 7), 1.142183, 89, []),
    "miolini__autoresearch-macos__results.tsv": (23, (8, 14, 1), 1.453113, 24, []),
    "mmonad__autoresearch-dgx-spark__results.tsv": (4, (3, 1, 0), 1.437060, 5, []),
    "trevin-creator__autoresearch-mlx__results.tsv": (13, (4, 9, 0), 1.658510, 6, []),
    "wavHub__autoresearch-results__runs_h100-20260416_results.tsv": (8, (3, 5, 0), 0.996343, 8, []),
    "wavHub__autoresearch-results__runs_rtx-4070-20260416_results.tsv": (13, (7, 6, 0), 1.394097, 10, []),
    "willcoming__autoresearch-mlx__results.tsv": (7, (6, 1, 0), 1.807902, 6, []),
    "zzsi__autoresearch-dllm__results.tsv": (3, (2, 1, 0), 1.338006, 3, []),  # no header
}
REFUSED = {  # file -> what the refusal must say
    "fiale-plus__autoresearch-ane__results.tsv": "records val_loss, not val_bpb",
}
# file -> step records, last step, its loss, val_bpb in the summary (None: no summary)
LOG_READINGS = {
    "JKeller45__autoresearch-rocm__run.log": (49, 48, 5.186633, 1.789054),
    "ReadbytheBeach__autoresearch-dgx__logs_auto_train_20260323_233001.log": (592, 591, 3.816022, 1.365715),
    "dowlingwong__autoresearch-macos__run.log": (0, None, None, 0.998),
    "miolini__autoresearch-macos__run@complete.log": (143, 142, 4.653872, 1.644952),
    "miolini__autoresearch-macos__run@cutoff.log": (17, 16, 6.513490, None),
    "miolini__autoresearch-macos__run@oom.log": (9, 8, 7.439391, None),
    "wavHub__autoresearch-results__runs_h100-20260416_run.log": (927, 926, 2.802330, 0.996831),
}


def test_every_file_of_the_folder_has_a_reading() -> None:
    names = {p.name for p in FORKS.iterdir()}
    assert names == set(TSV_READINGS) | set(REFUSED) | set(LOG_READINGS)


@pytest.mark.parametrize("name", sorted(TSV_READINGS))
def test_results_tsv_imports_as_read(name: str) -> None:
    rows, (keep, discard, crash), best, best_line, skipped = TSV_READINGS[name]
    result = read_results_tsv(FORKS / name)
    assert len(result.rows) == rows
    counts = tuple(sum(r.status == s for r in result.rows) for s in ("keep", "discard", "crash"))
    assert counts == (keep, discard, crash)
    top = min((r for r in result.rows if r.status == "keep"), key=lambda r: r.val_bpb or 99)
    assert (top.val_bpb, top.line_no) == (pytest.approx(best), best_line)
    assert [s.line_no for s in result.skipped] == skipped
    assert all(r.val_bpb is None for r in result.rows if r.status == "crash")
    assert all(r.memory_gb is None or r.memory_gb < 200 for r in result.rows)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_file_of_another_metric_is_refused_saying_why(name: str) -> None:
    with pytest.raises(TsvFormatError, match=REFUSED[name]):
        read_results_tsv(FORKS / name)


def test_nttluke_crash_rows_and_megabytes_are_noted() -> None:
    result = read_results_tsv(FORKS / "NTTLuke__autoresearch-mlx__results.tsv")
    notes = {r.line_no: r.reason for r in result.repaired}
    assert "99.0 stored as missing" in notes[7] and "99.0 stored as missing" in notes[9]
    megabytes = [r for r in result.rows if r.line_no in (8, 10, 11)]
    assert [round(r.memory_gb, 1) for r in megabytes] == [9.1, 9.1, 9.1]
    assert all("megabytes" in notes[r.line_no] for r in megabytes)


def test_blueberry_section_rows_and_the_space_separated_row() -> None:
    result = read_results_tsv(FORKS / "blueberry-llm__autoresearch-windows__results.tsv")
    assert {s.reason for s in result.skipped} == {"a section heading, not an experiment"}
    spaced = next(r for r in result.rows if r.line_no == 23)
    assert (spaced.commit, spaced.val_bpb, spaced.memory_gb, spaced.status) == ("c326838", 1.316243, 3.4,
                                                                               "discard")
    assert spaced.description == "MoE matrix_lr=0.10 (from 0.08), worse than baseline"
    assert any(r.line_no == 23 and "spaces instead of tabs" in r.reason for r in result.repaired)


def test_elementalcollision_baseline_status_suggests_mapping_it() -> None:
    path = FORKS / "elementalcollision__autoresearch-cuda__results_climbmix_results.tsv"
    result = read_results_tsv(path)
    assert result.rows[0].commit == "exp0" and result.rows[0].memory_gb == 17.1  # peak_mem_gb
    assert result.suggestions == [("status 'baseline' looks like a kept run but imports as discard: "
                                   "re-run with --map-status baseline=keep")]
    mapped = read_results_tsv(path, status_map={"baseline": "keep"})
    assert sum(r.status == "keep" for r in mapped.rows) == 24 and mapped.suggestions == []


@pytest.mark.parametrize("name", sorted(LOG_READINGS))
def test_run_log_parses_as_read(name: str) -> None:
    steps, last, loss, val_bpb = LOG_READINGS[name]
    result = parse_file(FORKS / name)
    assert result.num_step_records == steps
    assert (result.last_step.step if result.last_step else None) == last
    assert (result.last_step.loss if result.last_step else None) == (pytest.approx(loss) if loss else None)
    assert (result.summary or {}).get("val_bpb") == (pytest.approx(val_bpb) if val_bpb else None)
    streamed = StreamParser()
    records = streamed.feed((FORKS / name).read_bytes()) + streamed.flush()
    assert len(records) == steps  # the step a cut-off line ends with is kept too


def test_glued_traceback_and_n_a_fields_are_read_as_missing_not_as_text() -> None:
    oom = StreamParser()
    records = oom.feed((FORKS / "miolini__autoresearch-macos__run@oom.log").read_bytes()) + oom.flush()
    assert records[-1].remaining_s == 300.0  # `remaining: 300s    Traceback (most recent call last):`
    rocm = parse_file(FORKS / "JKeller45__autoresearch-rocm__run.log")
    assert rocm.last_step.mfu_pct is None and "mfu" not in rocm.last_step.extra


def test_cockpit_import_prints_the_suggestion_and_counts_repeats(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = FORKS / "elementalcollision__autoresearch-cuda__results_climbmix_results.tsv"
    repeated = tmp_path / "results.tsv"
    lines = path.read_text().splitlines(keepends=True)
    repeated.write_text("".join(lines + lines[1:3]))  # two rows written twice
    monkeypatch.setenv("COCKPIT_LEDGER", str(tmp_path / "ledger.db"))
    code, out, err = cli("import", str(repeated), cwd=tmp_path)
    assert code == 0, err
    assert "101 imported, 0 already in the ledger, 2 skipped" in out
    assert "skipped line 103: repeats line 2 of this file" in out
    assert "hint: status 'baseline' looks like a kept run" in out and "--map-status baseline=keep" in out
