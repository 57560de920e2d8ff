"""Real results.tsv files and raw training logs from public autoresearch forks.

They stay in ../shared/data/real-runs/ (never copied into the repository); a missing folder is an
error, not a skip, so a test run can never pass without reading them.
"""
from __future__ import annotations

from pathlib import Path

from app.logs.parse import ParseResult, StreamParser

REAL_RUNS = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-runs"

if not REAL_RUNS.is_dir():
    raise RuntimeError(f"real-run data not found at {REAL_RUNS}: check out ../shared beside the repo")


def parse_file(path: Path, chunk_size: int = 1 << 20) -> ParseResult:
    """A whole log through the parser, in chunks, as the runner and the observer read one."""
    parser = StreamParser(keep_records=False)
    with open(path, "rb") as log:
        while chunk := log.read(chunk_size):
            parser.feed(chunk)
    return parser.finish()
