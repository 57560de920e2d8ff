"""logparse: real fork logs, arbitrary chunking, FAIL, summaries, hostile input, constant memory."""

from __future__ import annotations

import contextlib
import math
import random
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.logs.parse import (
    MAX_SEGMENT_CHARS,
    REQUIRED_SUMMARY_KEYS,
    TAIL_LINE_CHARS,
    TAIL_LINES,
    TRACEBACK,
    ParseResult,
    StreamParser,
    summary_problems,
)
from app.logs.steps import StepRecord, parse_step_line
from realdata import REAL_RUNS, parse_file

REAL_LOGS = sorted(REAL_RUNS.glob("*.log"))

UPSTREAM_STEP = (
    "step 00042 (13.7%) | loss: 4.123456 | lrm: 1.00 | dt: 312ms | tok/sec: 52,480 | mfu: 0.0% "
    "| epoch: 1 | remaining: 259s    "
)
SUMMARY = (
    "---\nval_bpb:          0.997900\ntraining_seconds: 300.1\ntotal_seconds:    325.9\n"
    "peak_vram_mb:     45060.2\nmfu_percent:      39.80\ntotal_tokens_M:   499.6\nnum_steps:        953\n"
    "num_params_M:     50.3\ndepth:            8\n"
    "device_name:      NVIDIA H100 80GB HBM3\nattention:        fa3\n"
)


def real_log(name: str) -> Path:
    return REAL_RUNS / name


def step_text(step: int, loss: float = 3.0, extra: str = "") -> str:
    return (
        f"step {step:05d} ({step / 10:.1f}%) | loss: {loss:.6f} | lrm: 1.00 | dt: 300ms | tok/sec: 1,000 "
        f"| mfu: 1.0% | epoch: 1 |{extra} remaining: {300 - step}s    "
    )


def synthetic_log(steps: int = 5, summary: str = SUMMARY) -> bytes:
    body = "".join("\r" + step_text(step) for step in range(steps))
    return ("startup line\n" + body + "\nfree-form line\n" + summary).encode()


def parse_chunked(
    data: bytes, sizes: list[int] | None = None, seed: int = 0
) -> tuple[ParseResult, list[StepRecord]]:
    """Feed `data` in the given chunk sizes (cycled), or in seeded random sizes mixing 1-byte runs."""
    rng = random.Random(seed)
    parser, records, offset, index = StreamParser(), [], 0, 0
    while offset < len(data):
        if sizes:
            size, index = sizes[index % len(sizes)], index + 1
        else:
            size = rng.randint(1, 3) if rng.random() < 0.3 else rng.randint(1, 5000)
        records += parser.feed(data[offset : offset + size])
        offset += size
    return parser.finish(), records


def parse_bytes(data: bytes, tmp_path: Path) -> ParseResult:
    path = tmp_path / "run.log"
    path.write_bytes(data)
    return parse_file(path)


@contextlib.contextmanager
def peak_memory() -> Iterator[SimpleNamespace]:
    """The most memory Python allocated inside the block (tracemalloc), in `.bytes`."""
    peak = SimpleNamespace(bytes=0)
    tracemalloc.start()
    try:
        yield peak
    finally:
        peak.bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


def step_numbers_in(raw: bytes) -> list[int]:
    """Step numbers of every `step NNNNN` segment, found independently of the parser."""
    return [int(n) for n in re.findall(rb"(?:^|[\r\n])step (\d+) ", raw)]


def summary_block_in(raw: bytes) -> list[tuple[str, str]]:
    """(key, raw value) pairs after the last `---` line, found independently of the parser."""
    lines = raw.decode().split("\n")
    start = max(i for i, line in enumerate(lines) if line.strip() == "---")
    pairs = [line.split(":", 1) for line in lines[start + 1 :] if ":" in line]
    return [(key.strip(), value.strip()) for key, value in pairs]


# ---------------------------------------------------------------------------
# Real logs from public forks


def test_finished_real_log_compute90() -> None:
    path = real_log("moe-run-compute90.log")
    raw = path.read_bytes()
    result = parse_file(path)

    numbers = step_numbers_in(raw)
    assert len(numbers) > 6000
    assert result.num_step_records == len(numbers)
    assert result.last_step is not None and result.last_step.step == numbers[-1] == 6999
    assert result.last_step.extra.keys() >= {"router_ent", "load_cv", "max_load", "aux"}
    assert result.last_step.tok_per_sec == 1_591_769 and result.last_step.dt_ms == 165

    expected = summary_block_in(raw)
    assert result.summary is not None
    assert list(result.summary) == [key for key, _ in expected]
    for key, value in expected:
        assert result.summary[key] == (int(value) if value.isdigit() else float(value))
    assert result.summary["val_bpb"] == 0.936404
    assert result.summary["num_steps"] == 7000 == result.num_step_records
    assert result.failed is False and result.problems == []

    last_lines = [line for line in raw.decode().split("\n") if line.strip()][-TAIL_LINES:]
    assert result.tail == [line.rstrip() for line in last_lines]


def test_real_log_that_stops_mid_run() -> None:
    path = real_log("moe-run-f3.log")
    raw = path.read_bytes()
    result = parse_file(path)

    assert not raw.endswith(b"\n")
    numbers = step_numbers_in(raw)
    assert result.num_step_records == len(numbers) > 1000
    assert result.last_step == parse_step_line(raw.rsplit(b"\r", 1)[1].decode())
    assert result.last_step is not None and result.last_step.step == numbers[-1]
    assert result.summary is None and not result.failed
    assert result.problems == ["no summary block (no `---` line after training)"]
    assert result.tail[-1] == raw.rsplit(b"\r", 1)[1].decode().rstrip()
    streamed = StreamParser()
    records = streamed.feed(raw) + streamed.flush()  # the step the cut-off log ends with, too
    assert len(records) == len(numbers) and records[-1] == result.last_step


def test_real_smoke_log() -> None:
    path = real_log("moe-run-smoke.log")
    raw = path.read_bytes()
    result = parse_file(path)
    assert result.num_step_records == len(step_numbers_in(raw)) == 1
    assert result.summary is not None and result.summary["num_steps"] == result.num_step_records
    assert result.summary["val_bpb"] == float(dict(summary_block_in(raw))["val_bpb"])
    assert result.problems == []


@pytest.mark.parametrize("path", REAL_LOGS, ids=lambda p: p.name)
def test_every_real_log_gives_identical_results_in_any_chunking(path: Path) -> None:
    raw = path.read_bytes()
    whole = parse_file(path)
    for seed in range(2):
        chunked, records = parse_chunked(raw, seed=seed)
        assert chunked == whole
        steps = [record.step for record in records]
        if not raw.endswith((b"\r", b"\n")):  # a segment still open at EOF is closed by finish()
            assert whole.last_step is not None and whole.num_step_records == len(steps) + 1
            steps.append(whole.last_step.step)
        assert steps == step_numbers_in(raw)


def test_one_byte_chunks_on_a_real_log_slice() -> None:
    raw = real_log("moe-run-compute90.log").read_bytes()
    sample = raw[:30_000] + raw[-8_000:]
    one_shot, _ = parse_chunked(sample, sizes=[len(sample)])
    assert parse_chunked(sample, sizes=[1])[0] == one_shot
    assert one_shot.num_step_records > 50 and one_shot.summary is not None


def test_crlf_log_parses_like_the_lf_original() -> None:
    raw = real_log("moe-run-compute90.log").read_bytes()
    original, _ = parse_chunked(raw, sizes=[len(raw)])
    crlf, _ = parse_chunked(raw.replace(b"\n", b"\r\n"), seed=3)
    assert crlf == original


# ---------------------------------------------------------------------------
# Chunk boundaries and encodings


def test_splits_inside_multibyte_utf8_change_nothing() -> None:
    steps = "".join("\r" + step_text(s, extra=" note: ünï 🚀 |") for s in range(3))
    text = "démarrage → 日本語 🚀\n" + steps
    data = (text + "\n" + SUMMARY + "device_note:      ü→🚀\n").encode()
    one_shot, _ = parse_chunked(data, sizes=[len(data)])
    for sizes in ([1], [2], [3], [5, 1, 7]):
        assert parse_chunked(data, sizes=sizes)[0] == one_shot
    assert one_shot.problems == []
    assert one_shot.last_step is not None and one_shot.last_step.extra["note"] == "ünï 🚀"
    assert one_shot.summary is not None and one_shot.summary["device_note"] == "ü→🚀"
    assert "démarrage → 日本語 🚀" in one_shot.tail


def test_non_utf8_bytes_are_replaced_and_reported(tmp_path: Path) -> None:
    data = b"bad \xff\xfe bytes \xc3\n" + synthetic_log(3)
    result = parse_bytes(data, tmp_path)
    assert result.num_step_records == 3 and result.summary is not None
    assert "\ufffd" in result.tail[0]
    assert result.problems == ["log is not valid UTF-8: bad bytes shown as U+FFFD"]
    assert parse_chunked(data, sizes=[1])[0] == result


def test_live_progress_and_records_per_chunk() -> None:
    parser = StreamParser()
    assert parser.last_step is None
    first = parser.feed(("\r" + step_text(0) + "\r" + step_text(1)[:20]).encode())
    assert first == [parse_step_line(step_text(0))]
    assert parser.last_step is not None and parser.last_step.step == 0
    records = parser.feed((step_text(1)[20:] + "\r" + step_text(2)).encode())
    assert [record.step for record in records] == [1]
    assert parser.num_step_records == 2 and parser.last_step.step == 1
    assert parser.lines_seen == 0
    assert parser.bytes_seen == len("\r\r\r" + step_text(0) + step_text(1) + step_text(2))
    result = parser.finish()
    assert result.last_step is not None and result.last_step.step == 2
    assert parser.lines_seen == 1  # the unterminated line ends at EOF
    assert parser.finish() is result
    with pytest.raises(RuntimeError):
        parser.feed(b"more")


def test_without_kept_records_feed_returns_nothing_but_last_step_is_live() -> None:
    parser = StreamParser(keep_records=False)
    assert parser.feed(("\r" + step_text(7) + "\r" + step_text(8) + "\r").encode()) == []
    assert parser.last_step == parse_step_line(step_text(8))
    assert parser.num_step_records == 2


# ---------------------------------------------------------------------------
# FAIL and summaries


def test_fail_right_after_a_step_as_upstream_prints_it(tmp_path: Path) -> None:
    data = ("\r" + step_text(0) + "\r" + step_text(1, loss=float("nan")) + "FAIL\n").encode()
    result = parse_bytes(data, tmp_path)
    assert result.failed
    assert result.last_step is not None and result.last_step.step == 1
    assert math.isnan(result.last_step.loss or 0.0) and result.last_step.remaining_s == 299
    assert result.summary is None


@pytest.mark.parametrize("text", ["FAIL\n", "out\nFAIL", "out\r\nFAIL\r\n", "\r" + step_text(3) + "\nFAIL\n"])
def test_fail_alone_on_a_line(text: str, tmp_path: Path) -> None:
    assert parse_bytes(text.encode(), tmp_path).failed


@pytest.mark.parametrize(
    "text",
    ["FAILURE\n", "no FAIL here ok\n", "test_FAIL\n", "val_bpb FAIL\n", "\rstep 00003 | status: NOFAIL\n"],
)
def test_fail_inside_other_text_is_not_a_failure(text: str, tmp_path: Path) -> None:
    assert not parse_bytes(text.encode(), tmp_path).failed


def test_summary_values_are_typed_and_ordered(tmp_path: Path) -> None:
    result = parse_bytes(synthetic_log(summary=SUMMARY + "neg_inf: -inf\n"), tmp_path)
    summary = result.summary
    assert summary is not None and result.problems == []
    assert list(summary)[: len(REQUIRED_SUMMARY_KEYS)] == list(REQUIRED_SUMMARY_KEYS)
    assert summary["num_steps"] == 953 and type(summary["num_steps"]) is int
    assert summary["val_bpb"] == 0.9979 and type(summary["val_bpb"]) is float
    assert summary["device_name"] == "NVIDIA H100 80GB HBM3" and summary["attention"] == "fa3"
    assert summary["neg_inf"] == -math.inf


def test_nan_val_bpb_is_kept_and_reported(tmp_path: Path) -> None:
    result = parse_bytes(synthetic_log(summary=SUMMARY.replace("0.997900", "nan")), tmp_path)
    assert result.summary is not None and math.isnan(result.summary["val_bpb"])  # type: ignore[arg-type]
    assert result.problems == ["val_bpb is nan"]


def test_missing_keys_and_non_numeric_val_bpb_are_reported() -> None:
    missing = [f"summary has no {key}" for key in REQUIRED_SUMMARY_KEYS[1:]]
    assert summary_problems({"val_bpb": 0.99}) == missing
    full = dict.fromkeys(REQUIRED_SUMMARY_KEYS, 1.0)
    assert summary_problems(full) == []
    assert summary_problems({**full, "val_bpb": math.inf}) == ["val_bpb is inf"]
    assert summary_problems({**full, "val_bpb": "oops"}) == ["val_bpb is not a number: 'oops'"]
    assert summary_problems(None) == ["no summary block (no `---` line after training)"]


def test_warnings_after_the_summary_do_not_break_it(tmp_path: Path) -> None:
    clean = parse_bytes(synthetic_log(), tmp_path)
    noisy = synthetic_log() + (
        b"/opt/conda/lib/python3.13/site-packages/torch/distributed/distributed_c10d.py:4876: "
        b"UserWarning: barrier(): using the device under current context.\n"
        b"  warnings.warn(  # warn only once\n\n[rank0]: W0610 10:04:18 some noise\n"
    )
    result = parse_bytes(noisy, tmp_path)
    assert result.summary == clean.summary and result.problems == []
    assert result.tail[-1] == "[rank0]: W0610 10:04:18 some noise"


def test_the_last_of_two_summary_blocks_wins(tmp_path: Path) -> None:
    data = synthetic_log() + b"\n---\nval_bpb: 0.5\nnum_steps: 10\n"
    result = parse_bytes(data, tmp_path)
    assert result.summary == {"val_bpb": 0.5, "num_steps": 10}
    assert "summary has no depth" in result.problems


@pytest.mark.parametrize(
    "text",
    [
        "---\n" + "".join("\r" + step_text(s) for s in range(3)) + "\n",  # banner before training
        "\r" + step_text(0) + "\r---\r" + step_text(1) + "\nval_bpb: 0.9\n",  # `---` as a step segment
        "\r" + step_text(0) + "\r---\nval_bpb: 0.9\n",  # `---` shares the physical step line
        "--- header ---\nval_bpb: 0.9\n",
    ],
)
def test_dashes_inside_step_noise_are_not_a_summary(text: str, tmp_path: Path) -> None:
    result = parse_bytes(text.encode(), tmp_path)
    assert result.summary is None


NANOBIND_EXIT = (  # triton's leak report at interpreter exit after gc.freeze(), as a CUDA run prints it
    "nanobind: leaked 3 instances!\n"
    ' - leaked instance 0x7f0c2c0b4e30 of type "triton._C.libtriton.ir.context"\n'
    "nanobind: leaked 1 types!\n"
    "nanobind: this is likely caused by a reference counting issue in the binding code.\n"
)


def test_other_programs_lines_after_the_summary_never_become_metrics(tmp_path: Path) -> None:
    clean = parse_bytes(synthetic_log(), tmp_path)
    noisy = parse_bytes(synthetic_log() + NANOBIND_EXIT.encode(), tmp_path)
    assert noisy.summary == clean.summary and noisy.problems == []
    assert clean.summary is not None and "nanobind" not in noisy.summary
    rocm = parse_file(real_log("forks/JKeller45__autoresearch-rocm__run.log"))
    assert rocm.summary is not None and list(rocm.summary)[-1] == "activation_checkpointing"
    assert "Warning" not in rocm.summary and rocm.summary["mfu_percent"] == "n/a"


@pytest.mark.parametrize("ending", ["\nlate_key:         1\n", "not a summary line\nlate_key:         1\n",
                                    "banner: hello world\nlate_key: 1\n"])
def test_the_summary_block_ends_at_the_first_line_that_is_not_key_value(ending: str, tmp_path: Path) -> None:
    result = parse_bytes(synthetic_log() + ending.encode(), tmp_path)
    assert result.summary is not None and "late_key" not in result.summary and "banner" not in result.summary
    assert result.summary["attention"] == "fa3"


def test_crash_tail_starts_at_a_traceback_glued_to_the_last_step_line() -> None:
    result = parse_file(real_log("forks/miolini__autoresearch-macos__run@oom.log"))
    assert result.tail[0] == TRACEBACK
    assert result.tail[-1].startswith("RuntimeError: MPS backend out of memory")


def test_crash_tail_keeps_the_exception_line_whatever_comes_around_it(tmp_path: Path) -> None:
    frames = "".join(f'  File "/x/mod{n}.py", line {n}, in f{n}\n    call_{n}()\n' for n in range(200))
    noise = "".join(f"nanobind: leaked {n} instances!\n" for n in range(100))
    data = ("\r" + step_text(3) + TRACEBACK + "\n" + frames + "torch.OutOfMemoryError: CUDA out of memory.\n"
            "See documentation for Memory Management\n" + noise).encode()
    tail = parse_bytes(data, tmp_path).tail
    assert len(tail) <= TAIL_LINES and tail[0] == TRACEBACK
    assert tail[1] == "  ... 361 traceback lines left out ..."  # 400 frame lines, 39 shown
    assert tail[2:4] == ["    call_180()", '  File "/x/mod181.py", line 181, in f181']
    exception = tail.index("torch.OutOfMemoryError: CUDA out of memory.")
    assert tail[exception - 1] == "    call_199()"
    assert tail[exception + 1] == "See documentation for Memory Management"
    assert tail[exception + 2:] == [f"nanobind: leaked {n} instances!" for n in range(7)]


# ---------------------------------------------------------------------------
# Hostile input: huge lines, escapes, a long tail


def test_ten_megabyte_line_stays_bounded(tmp_path: Path) -> None:
    huge = b"\x1b[31m" + b"x" * (10 * 1024 * 1024)
    data = synthetic_log(3, summary="") + huge + b"\n" + SUMMARY.encode()
    parser = StreamParser()
    with peak_memory() as peak:
        for offset in range(0, len(data), 64 * 1024):
            parser.feed(data[offset : offset + 64 * 1024])
    assert peak.bytes < 2 * 1024 * 1024, "the 10 MB line was held, not cut"
    result = parser.finish()
    assert result.num_step_records == 3 and result.summary is not None
    assert result.problems == [
        f"1 over-long line(s) truncated: longest {len(huge):,} characters without a line break, "
        f"kept the first {MAX_SEGMENT_CHARS:,}"
    ]
    assert result.tail[-len(SUMMARY.splitlines()) - 1] == "x" * TAIL_LINE_CHARS
    assert parse_bytes(data, tmp_path) == result


def test_huge_unterminated_segment_fed_in_small_pieces_stays_bounded() -> None:
    parser = StreamParser()
    piece = b"y" * 97
    count = 30 * MAX_SEGMENT_CHARS // len(piece)
    with peak_memory() as peak:
        for _ in range(count):
            parser.feed(piece)
    assert peak.bytes < 1024 * 1024, "the open segment grew past its cap"
    result = parser.finish()
    assert result.problems[0] == (f"1 over-long line(s) truncated: longest {count * len(piece):,} characters "
                                  f"without a line break, kept the first {MAX_SEGMENT_CHARS:,}")
    assert result.tail == ["y" * TAIL_LINE_CHARS]


def test_tail_keeps_the_last_lines_sanitized(tmp_path: Path) -> None:
    lines = [f"line {n} \x1b[31mred\x1b[0m \x1b]0;pwned\x07[b]x[/b]" for n in range(80)]
    data = ("\n".join(lines) + "\n" + "\r" + step_text(1) + "\r" + step_text(2) + "\n").encode()
    result = parse_bytes(data, tmp_path)
    assert len(result.tail) == TAIL_LINES
    assert result.tail[0] == "line 31 red [b]x[/b]"
    assert result.tail[-1] == step_text(2).rstrip()  # a \r-rewritten line shows its last segment


# ---------------------------------------------------------------------------
# parse_step_line


def test_parse_upstream_step_line() -> None:
    assert parse_step_line(UPSTREAM_STEP) == StepRecord(
        step=42, progress_pct=13.7, loss=4.123456, lrm=1.0, dt_ms=312.0, tok_per_sec=52480.0,
        mfu_pct=0.0, epoch=1, remaining_s=259.0, extra={},
    )


def test_parse_fork_step_line_with_extra_fields_and_units() -> None:
    record = parse_step_line(
        "  step 01234 (55.0%) | loss: nan | dt: 1.5s | tok/sec: 1,020,145 | router_ent: 2.366 "
        "| load_cv: 0.227 | remaining: 900ms | epoch: x"
    )
    assert record is not None and record.step == 1234 and record.progress_pct == 55.0
    assert record.loss is not None and math.isnan(record.loss)
    assert record.dt_ms == 1500.0 and record.remaining_s == 0.9 and record.tok_per_sec == 1_020_145
    assert record.epoch is None and record.lrm is None
    assert record.extra == {"router_ent": "2.366", "load_cv": "0.227"}


@pytest.mark.parametrize(
    "text",
    ["", "   ", "step", "step x", "step5", "stepper 5", "Step 5", "step 5 (1%) trailing", "| loss: 1",
     "val_bpb: 0.99", "FAIL", "step " + "9" * 5000, "\x00\x1b[31m", "step 1 (((%) | x"],
)
def test_parse_garbage_returns_none(text: str) -> None:
    assert parse_step_line(text) is None


def test_parse_step_line_never_raises_on_random_text() -> None:
    rng = random.Random(7)
    alphabet = "step 0123456789.,:%()|-+eE nainf\r\t\x00é"
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        record = parse_step_line(rng.choice(["", "step 1 |", "step 2 (3%) |"]) + text)
        assert record is None or isinstance(record.step, int)
