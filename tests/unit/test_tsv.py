"""results.tsv import/export: real fork files, fork variants, bad input, round trips."""
from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from app.observe.tsv import (
    UPSTREAM_COLUMNS,
    TsvFormatError,
    TsvRow,
    parse_results_tsv,
    read_results_tsv,
    row_key,
    write_results_tsv,
)
from realdata import REAL_RUNS

REAL_FILES = sorted(REAL_RUNS.glob("*.tsv"))
UPSTREAM_HEADER = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\n"


def parse(text: str, **kwargs):
    return parse_results_tsv(text.encode("utf-8"), **kwargs)


def independent_reading(path: Path) -> list[dict[str, str]]:
    """The file as plain csv sees it: one dict per data row."""
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


# ---------------------------------------------------------------------------
# Real files from public forks

def test_real_files_are_present():
    assert {p.name for p in REAL_FILES} >= {"rtx5070-results.tsv", "moe-results.tsv", "mlx-results.tsv"}


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_file_matches_an_independent_reading(path):
    expected = independent_reading(path)
    known = [r for r in expected if r["status"] in ("keep", "discard", "crash")]
    unknown_lines = [i for i, r in enumerate(expected, start=2) if r not in known]
    result = read_results_tsv(path)

    assert result.has_header and result.columns == list(expected[0])
    assert len(result.rows) == len(expected) and result.skipped == []
    assert [r.line_no for r in result.repaired] == unknown_lines
    assert all("unknown status" in r.reason for r in result.repaired)
    assert [r.commit for r in result.rows] == [r["commit"] for r in expected]
    assert [r.description for r in result.rows] == [r["description"] for r in expected]
    unknown_rows = [r for r in result.rows if r.line_no in unknown_lines]
    assert all(r.status == "discard" and r.extra["original_status"] for r in unknown_rows)

    def count(status):
        return sum(r["status"] == status for r in expected)

    for status in ("keep", "crash"):
        assert sum(r.status == status for r in result.rows) == count(status)
    assert sum(r.status == "discard" for r in result.rows) == count("discard") + len(unknown_lines)
    measured = [float(r["val_bpb"]) for r in expected if float(r["val_bpb"]) > 0]
    kept = [float(r["val_bpb"]) for r in expected if r["status"] == "keep"]
    assert min(r.val_bpb for r in result.rows if r.val_bpb is not None) == min(measured)
    assert min(r.val_bpb for r in result.rows if r.status == "keep") == min(kept)
    assert sum(r.val_bpb is None for r in result.rows) == len(expected) - len(measured)
    extra_columns = [c for c in expected[0] if c not in UPSTREAM_COLUMNS]
    for row, plain in zip(result.rows, expected):
        extra = {k: v for k, v in row.extra.items() if k != "original_status"}
        assert extra == {c: plain[c] for c in extra_columns}


def test_real_files_have_the_documented_shapes():
    shapes = {p.name: (len(independent_reading(p)), len(read_results_tsv(p).columns))
              for p in REAL_FILES}
    assert shapes["rtx5070-results.tsv"] == (69, 11)
    assert shapes["moe-results.tsv"] == (28, 13)
    assert shapes["mlx-results.tsv"] == (11, 5)


def test_rtx5070_crash_rows_have_no_val_bpb_and_keep_unicode():
    result = read_results_tsv(REAL_RUNS / "rtx5070-results.tsv")
    crashes = [r for r in result.rows if r.status == "crash"]
    assert crashes and all(r.val_bpb is None and r.memory_gb is None for r in crashes)
    assert any("→" in r.description for r in result.rows)
    first = result.rows[0]
    assert (first.line_no, first.commit, first.extra["tok_per_sec"]) == (2, "3087aeb", "37700")


def test_moe_fork_statuses_can_be_mapped_instead_of_skipped():
    path = REAL_RUNS / "moe-results.tsv"
    mapping = {"tentative": "discard", "repair": "keep", "support": "discard"}
    result = read_results_tsv(path, status_map=mapping)
    assert result.skipped == []
    assert len(result.rows) == len(independent_reading(path))
    mapped = {r.line_no: (r.status, r.extra["original_status"]) for r in result.rows
              if "original_status" in r.extra}
    assert mapped == {7: ("discard", "tentative"), 10: ("keep", "repair"), 21: ("discard", "support")}
    with pytest.raises(ValueError, match="tentative"):
        read_results_tsv(path, status_map={"tentative": "maybe"})


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_real_file_round_trip_through_upstream_format(path, tmp_path):
    original = read_results_tsv(path)
    out = tmp_path / "results.tsv"
    assert write_results_tsv(original.rows, out) == len(original.rows)
    again = read_results_tsv(out)
    assert again.columns == list(UPSTREAM_COLUMNS) and again.skipped == []
    assert [row_key(r) for r in again.rows] == [row_key(r) for r in original.rows]
    assert [(r.commit, r.status, r.val_bpb, r.description) for r in again.rows] == [
        (r.commit, r.status, r.val_bpb, r.description) for r in original.rows
    ]
    assert all(r.extra == {} for r in again.rows)


# ---------------------------------------------------------------------------
# Fork variants and tolerance

def test_reordered_and_extra_columns():
    text = (
        "status\tDescription\tcommit\tnum_steps\tVal_BPB\tkind\n"
        "keep\tbaseline\tabc1234\t953\t0.997900\tbaseline\n"
        "discard\tbigger lr\tdef5678\t950\t1.001000\tlr\n"
    )
    result = parse(text)
    assert [(r.commit, r.val_bpb, r.status, r.description, r.memory_gb) for r in result.rows] == [
        ("abc1234", 0.9979, "keep", "baseline", None),
        ("def5678", 1.001, "discard", "bigger lr", None),
    ]
    assert result.rows[1].extra == {"num_steps": "950", "kind": "lr"}


def test_crlf_bom_blank_lines_trailing_whitespace_unicode():
    text = (
        "\ufeffcommit\tval_bpb\tmemory_gb\tstatus\tdescription  \r\n"
        "\r\n"
        "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline — ünïcödé 🚀   \r\n"
        "   \r\n"
        "b2c3d4e\t0.000000\t0.0\tcrash\tdouble width (OOM)\r\n"
        "c3d4e5f\t0.993200\t44.2\tKEEP\tincrease LR to 0.04\r\n\r\n"
    )
    result = parse(text)
    assert result.skipped == [] and result.repaired == []
    assert [(r.line_no, r.commit, r.val_bpb, r.memory_gb, r.status) for r in result.rows] == [
        (3, "a1b2c3d", 0.9979, 44.0, "keep"),
        (5, "b2c3d4e", None, None, "crash"),
        (6, "c3d4e5f", 0.9932, 44.2, "keep"),
    ]
    assert result.rows[0].description == "baseline — ünïcödé 🚀"


def test_old_mac_line_endings():
    result = parse(UPSTREAM_HEADER.strip() + "\ra\t1.0\t1.0\tkeep\tx\rb\t1.1\t1.0\tdiscard\ty")
    assert [(r.line_no, r.commit) for r in result.rows] == [(2, "a"), (3, "b")]


def test_missing_trailing_columns_are_tolerated():
    text = UPSTREAM_HEADER + "a1b2c3d\t0.990000\t44.0\tkeep\n" + "b2c3d4e\t0.980000\t\tdiscard\t\n"
    result = parse(text)
    assert [(r.commit, r.description, r.memory_gb) for r in result.rows] == [
        ("a1b2c3d", "", 44.0), ("b2c3d4e", "", None)]
    extra_header = "commit\tval_bpb\tmemory_gb\tstatus\tdescription\tmfu\tnum_steps\n"
    row = parse(extra_header + "a1b2c3d\t0.99\t44\tkeep\tx\t39.8\n").rows[0]
    assert row.extra == {"mfu": "39.8", "num_steps": ""}


def test_headerless_upstream_file():
    text = "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline\nb2c3d4e\t1.005000\t44.0\tdiscard\tswitch to GeLU\n"
    result = parse(text)
    assert not result.has_header and result.columns == list(UPSTREAM_COLUMNS)
    assert [(r.line_no, r.commit) for r in result.rows] == [(1, "a1b2c3d"), (2, "b2c3d4e")]


def test_malformed_rows_are_skipped_with_line_numbers_and_reasons():
    text = (
        UPSTREAM_HEADER
        + "a1b2c3d\t0.997900\t44.0\tkeep\tgood\n"           # 2
        + "\t0.990000\t44.0\tkeep\tno commit\n"              # 3
        + "b2c3d4e\tabc\t44.0\tdiscard\tbad number\n"        # 4
        + "c3d4e5f\t0.990000\t44.0\tmaybe\tbad status\n"     # 5
        + "d4e5f6a\t0.990000\n"                              # 6: truncated (a half-written line)
        + "e5f6a7b\t-0.5\t44.0\tkeep\tnegative\n"            # 7
        + "f6a7b8c\t0,99\t44.0\tkeep\tcomma decimal\n"       # 8
        + "a7b8c9d\t0.980000\t44.0\tdiscard\tgood too\n"     # 9
    )
    result = parse(text)
    assert [r.line_no for r in result.rows] == [2, 5, 9]
    assert result.rows[1].status == "discard" and result.rows[1].extra["original_status"] == "maybe"
    assert "unknown status 'maybe' imported as discard" in result.repaired[0].reason
    reasons = {s.line_no: s.reason for s in result.skipped}
    assert list(reasons) == [3, 4, 6, 7, 8]
    assert reasons[3] == "no commit"
    assert "'abc' is not a number" in reasons[4]
    assert "no status" in reasons[6]
    assert "negative" in reasons[7]
    assert "'0,99' is not a number" in reasons[8]


def test_extra_tabs_join_into_a_trailing_description_or_skip():
    upstream = parse(UPSTREAM_HEADER + "a1b2c3d\t0.99\t44.0\tdiscard\tuse\tthe\t\ttabs\t\t\n")
    assert upstream.rows[0].description == "use the tabs"
    assert [(n.line_no, "joined into description" in n.reason) for n in upstream.repaired] == [(2, True)]
    desc_not_last = "commit\tval_bpb\tdescription\tstatus\n"
    result = parse(desc_not_last + "a1b2c3d\t0.99\tx\ty\tkeep\n" + "b2c3d4e\t0.98\tok\tkeep\t\t\n")
    assert [s.line_no for s in result.skipped] == [2]
    assert "5 fields but the header has 4 columns" in result.skipped[0].reason
    assert [r.commit for r in result.rows] == ["b2c3d4e"]
    both = parse(UPSTREAM_HEADER + "a1b2c3d\t0.99\t44.0\tmaybe\tuse\ttabs\n")
    assert both.skipped == [] and both.rows[0].description == "use tabs"
    assert [n.line_no for n in both.repaired] == [2, 2]


def test_memory_and_val_bpb_special_values():
    text = (
        UPSTREAM_HEADER
        + "a1b2c3d\tnan\tlots\tcrash\tNaN loss\n"
        + "b2c3d4e\t\t\tcrash\tempty cells\n"
        + "c3d4e5f\t1.5\t-\tdiscard\tdash memory\n"
        + "d4e5f6a\tn/a\tN/A\tdiscard\tnot measured\n"
    )
    result = parse(text)
    assert [(r.val_bpb, r.memory_gb) for r in result.rows] == [(None, None), (None, None), (1.5, None),
                                                              (None, None)]
    assert [n.line_no for n in result.repaired] == [2]  # `-` and `n/a` are plainly "not measured"
    assert "memory_gb 'lots'" in result.repaired[0].reason


def test_non_utf8_bytes_are_replaced_and_reported():
    data = (UPSTREAM_HEADER.encode() + b"a1b2c3d\t0.99\t44.0\tkeep\tcaf\xe9 latin-1\n"
            + b"b2c3d4e\t0.98\t44.0\tdiscard\tfine\n")
    result = parse_results_tsv(data)
    assert [r.commit for r in result.rows] == ["a1b2c3d", "b2c3d4e"]
    assert result.rows[0].description == "caf\ufffd latin-1"
    assert [(n.line_no, "undecodable" in n.reason) for n in result.repaired] == [(2, True)]


def test_empty_file_imports_nothing():
    for data in (b"", b"\n\r\n  \n", b"\xef\xbb\xbf"):
        result = parse_results_tsv(data)
        assert result.rows == [] and result.skipped == []


def test_header_only_file_imports_nothing():
    result = parse(UPSTREAM_HEADER)
    assert result.has_header and result.rows == [] and result.skipped == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("hello world\nsecond line\n", "no recognisable results.tsv header"),
        ("commit\tval_loss\tstatus\nabc\t1.0\tkeep\n", "records val_loss, not val_bpb"),
        ("id,val_bpb,status\n1,0.9,keep\n", "no recognisable"),
        ("commit\tval_bpb\tstatus\tStatus\n", "duplicate column"),
    ],
)
def test_unrecognisable_header_is_a_clear_error(text, message, tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text(text)
    with pytest.raises(TsvFormatError, match=message) as err:
        read_results_tsv(path)
    assert "line 1" in str(err.value)
    assert path.read_text() == text


# ---------------------------------------------------------------------------
# Idempotence key

def row(commit="a1b2c3d", val=0.99, mem=44.0, status="keep", desc="x", line_no=2, **extra):
    return TsvRow(line_no, commit, val, mem, status, desc, extra)


def test_row_key_is_stable_and_ignores_position_memory_and_extras():
    assert row_key(row()) == row_key(row(line_no=40, mem=12.0, mfu="39"))
    assert row_key(row(val=0.99)) == row_key(row(val=0.9900000001))
    assert row_key(row(desc="a\tb")) == row_key(row(desc="a b"))
    assert len(row_key(row())) == 32


@pytest.mark.parametrize(
    "change",
    [{"commit": "b2c3d4e"}, {"val": 0.991}, {"val": None}, {"status": "discard"}, {"desc": "y"}],
)
def test_row_key_distinguishes_rows(change):
    assert row_key(row()) != row_key(row(**change))


def test_importing_twice_gives_the_same_keys():
    path = REAL_RUNS / "rtx5070-results.tsv"
    first = {row_key(r) for r in read_results_tsv(path).rows}
    second = {row_key(r) for r in read_results_tsv(path).rows}
    assert first == second
    assert len(first) == len(read_results_tsv(path).rows)


# ---------------------------------------------------------------------------
# Export

def test_export_writes_upstream_exact_format():
    rows = [
        row("a1b2c3d", 0.9979, 44.04, "keep", "baseline"),
        row("b2c3d4e", 1.0050001, 44.2, "discard", "tabs\there and\nnewlines\r\nand\u2028more"),
        row("c3d4e5f", 1.2, None, "crash", "OOM"),
        row("d4e5f6a", None, 40.0, "timeout", "too slow"),
        row("e5f6a7b", 0.98, 44.0, "approved", "reviewed"),
        row("f6a7b8c", 0.97, 44.0, "rejected", "vetoed"),
    ]
    out = io.StringIO()
    assert write_results_tsv(rows, out) == 6
    assert out.getvalue().splitlines() == [
        "commit\tval_bpb\tmemory_gb\tstatus\tdescription",
        "a1b2c3d\t0.997900\t44.0\tkeep\tbaseline",
        "b2c3d4e\t1.005000\t44.2\tdiscard\ttabs here and newlines  and more",
        "c3d4e5f\t0.000000\t0.0\tcrash\tOOM",
        "d4e5f6a\t0.000000\t40.0\tcrash\ttoo slow",
        "e5f6a7b\t0.980000\t44.0\tkeep\treviewed",
        "f6a7b8c\t0.970000\t44.0\tdiscard\tvetoed",
    ]


@pytest.mark.parametrize(
    "bad, message",
    [(row(status="pending"), "status 'pending' cannot be exported"),
     (row(commit=" "), "no commit"),
     (row(val=float("inf")), "val_bpb is inf")],
)
def test_export_rejects_bad_rows_and_leaves_the_file_untouched(bad, message, tmp_path):
    path = tmp_path / "results.tsv"
    path.write_text("previous content\n")
    with pytest.raises(ValueError, match=message):
        write_results_tsv([row(), bad], path)
    assert path.read_text() == "previous content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.tsv"]


def test_export_then_import_round_trip_with_awkward_rows(tmp_path):
    rows = [
        row("a1b2c3d", 0.9979, 44.0, "keep", "baseline — ünïcödé"),
        row("b2c3d4e", None, None, "crash", "OOM\twith a tab"),
        row("c3d4e5f", 1.0011, 44.1, "discard", ""),
    ]
    path = tmp_path / "nested-ok.tsv"
    write_results_tsv(rows, path)
    assert path.read_bytes().count(b"\r") == 0
    back = read_results_tsv(path)
    assert back.skipped == [] and back.repaired == []
    assert [row_key(r) for r in back.rows] == [row_key(r) for r in rows]
    assert [(r.val_bpb, r.memory_gb, r.description) for r in back.rows] == [
        (0.9979, 44.0, "baseline — ünïcödé"), (None, None, "OOM with a tab"), (1.0011, 44.1, "")]


def test_winner_like_statuses_suggest_map_status_and_spaced_rows_must_fit():
    text = (UPSTREAM_HEADER + "a1b2c3d\t1.0\t1.0\tbest\tfirst winner\n"
            + "b2c3d4e\t0.9\t1.0\tadopted\tsecond\n"
            + "c3d4e5f 0.8\n")  # spaces, but too few fields for the header: refused, said why
    result = parse(text)
    assert [r.status for r in result.rows] == ["discard", "discard"]
    assert result.suggestions == [("status 'adopted', 'best' looks like a kept run but imports as "
                                   "discard: re-run with --map-status adopted=keep --map-status best=keep")]
    skipped = result.skipped[0]
    assert skipped.line_no == 4 and "2 space-separated fields for 5 columns" in skipped.reason
    mapped = parse(text, status_map={"best": "keep", "adopted": "keep"})
    assert [r.status for r in mapped.rows] == ["keep", "keep"] and mapped.suggestions == []
