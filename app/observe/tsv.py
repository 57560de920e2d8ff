"""results.tsv import (tolerant of fork variants) and export (upstream's exact 5 columns).

Import never crashes on a bad row: it skips it and says which line and why. Export validates every
row before writing and replaces the file atomically, so a bad row leaves nothing half-written.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from app.errors import UsageError
from app.ledger.schema import SUMMARY_COLUMNS

UPSTREAM_COLUMNS = ("commit", "val_bpb", "memory_gb", "status", "description")
REQUIRED_COLUMNS = ("commit", "val_bpb", "status")  # a header must name these to be recognised
STATUSES = ("keep", "discard", "crash")
WINNER_STATUSES = ("best", "baseline", "adopted")  # a fork's words for a kept run: suggest mapping them
COLUMN_ALIASES = {  # a fork's column name -> ours, used when the file lacks ours
    "exp": "commit", "experiment": "commit", "id": "commit",
    "peak_mem_gb": "memory_gb", "mem_gb": "memory_gb", "peak_memory_gb": "memory_gb",
}
OTHER_METRICS = ("val_loss", "val_sharpe", "loss")  # metrics that are not val_bpb: refused
MISSING = ("", "n/a", "na", "nan", "-", "none", "null")  # cells that mean "not measured"
MB_ABOVE = 1024.0  # a memory_gb value above this is megabytes (no GPU has a terabyte)
EXPORT_STATUS = {  # ledger decision -> upstream status; anything else is not exportable
    "keep": "keep",
    "approved": "keep",
    "discard": "discard",
    "rejected": "discard",
    "crash": "crash",
    "timeout": "crash",  # upstream: a run past the time limit is a failure
    "killed": "crash",
    "lost": "crash",
}
_BOM = b"\xef\xbb\xbf"
_TO_SPACE = str.maketrans(dict.fromkeys("\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029", " "))


class TsvFormatError(UsageError, ValueError):
    """The file is not a results.tsv we can read (no recognisable header)."""


@dataclass(frozen=True)
class TsvRow:
    line_no: int  # 1-based physical line in the file
    commit: str
    val_bpb: float | None  # None: not measured (0.000000 on crash rows, empty, nan)
    memory_gb: float | None
    status: str  # one of STATUSES
    description: str
    extra: dict[str, str] = field(default_factory=dict)  # every other column, by header name


@dataclass(frozen=True)
class Skipped:
    line_no: int
    reason: str


@dataclass(frozen=True)
class Repaired:
    """Something fixed on a line so that it could be read (said in `reason`)."""

    line_no: int
    reason: str


@dataclass
class TsvImport:
    columns: list[str]  # header names as read (upstream's 5 when there is no header)
    has_header: bool
    rows: list[TsvRow] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    repaired: list[Repaired] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)  # what the user may want to do next
    keys: list[str] = field(default_factory=list)  # our name for each column (aliases resolved)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = _canonical(self.columns)


# ---------------------------------------------------------------------------
# Import

def read_results_tsv(
    path: str | os.PathLike[str], status_map: Mapping[str, str] | None = None
) -> TsvImport:
    """Read a results.tsv from disk; see parse_results_tsv."""
    return parse_results_tsv(Path(path).read_bytes(), status_map)


def parse_results_tsv(data: bytes, status_map: Mapping[str, str] | None = None) -> TsvImport:
    """Parse results.tsv bytes; raises TsvFormatError if the first line is no recognisable header.

    `status_map` maps a fork's own statuses (e.g. "tentative") onto keep/discard/crash; the
    original is kept in `extra["original_status"]`. Unmapped unknown statuses import as discard.
    """
    mapping = _check_status_map(status_map or {})
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    content: list[tuple[int, str]] = []
    repaired: list[Repaired] = []
    for line_no, raw in enumerate(data.splitlines(), start=1):
        text, bad_bytes = _decode(raw)
        if bad_bytes:
            repaired.append(Repaired(line_no, "undecodable bytes replaced with U+FFFD"))
        if text.strip():
            content.append((line_no, text))
    if not content:
        return TsvImport(columns=list(UPSTREAM_COLUMNS), has_header=False)
    result = _start_import(*content[0])
    result.repaired = repaired
    for line_no, text in content[1:] if result.has_header else content:
        parsed = _parse_row(line_no, text, result, mapping)
        if isinstance(parsed, Skipped):
            result.skipped.append(parsed)
        else:
            result.rows.append(parsed)
    _drop_repeats(result)
    result.repaired.sort(key=lambda note: note.line_no)
    result.skipped.sort(key=lambda note: note.line_no)
    winners = sorted({row.extra["original_status"] for row in result.rows
                      if row.extra.get("original_status", "").lower() in WINNER_STATUSES
                      and row.status == "discard"})
    if winners:
        flags = " ".join(f"--map-status {w}=keep" for w in winners)
        result.suggestions.append(f"status {', '.join(map(repr, winners))} looks like a kept run "
                                  f"but imports as discard: re-run with {flags}")
    return result


def _drop_repeats(result: TsvImport) -> None:
    """A row repeated inside the file is imported once; the repeats are reported as such."""
    first_line: dict[str, int] = {}
    kept = []
    for row in result.rows:
        key = row_key(row)
        if key in first_line:
            result.skipped.append(Skipped(row.line_no, f"repeats line {first_line[key]} of this file"))
            continue
        first_line[key] = row.line_no
        kept.append(row)
    result.rows = kept


def _canonical(columns: list[str]) -> list[str]:
    """Lower-cased column names with a fork's aliases replaced by ours where ours is absent."""
    keys = [name.lower() for name in columns]
    return [COLUMN_ALIASES[k] if k in COLUMN_ALIASES and COLUMN_ALIASES[k] not in keys else k
            for k in keys]


def _start_import(line_no: int, text: str) -> TsvImport:
    """Read the header line, or accept a headerless file in upstream's column order."""
    header = [name.strip() for name in text.split("\t")]
    while header and not header[-1]:
        header.pop()
    keys = _canonical(header)
    other = next((k for k in keys if k in OTHER_METRICS), None)
    if other and "val_bpb" not in keys:
        raise TsvFormatError(
            f"line {line_no}: this file records {other}, not val_bpb: the cockpit ranks runs by "
            "val_bpb only, so its rows cannot be compared with any other; nothing imported")
    if all(col in keys for col in REQUIRED_COLUMNS):
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise TsvFormatError(
                f"line {line_no}: duplicate column(s) in header: {', '.join(duplicates)}")
        columns = [name or f"column_{i}" for i, name in enumerate(header, start=1)]
        return TsvImport(columns=columns, has_header=True)
    if _looks_like_upstream_row(text):
        return TsvImport(columns=list(UPSTREAM_COLUMNS), has_header=False)
    raise TsvFormatError(
        f"line {line_no}: no recognisable results.tsv header (it needs the columns "
        f"{', '.join(REQUIRED_COLUMNS)}; upstream's is {' '.join(UPSTREAM_COLUMNS)}), got {text[:120]!r}"
    )


def _check_status_map(status_map: Mapping[str, str]) -> dict[str, str]:
    mapping = {}
    for source, target in status_map.items():
        if target.lower() not in STATUSES:
            raise ValueError(
                f"status {source!r} can only be mapped to {', '.join(STATUSES)}, not {target!r}")
        mapping[source.strip().lower()] = target.lower()
    return mapping


def _decode(raw: bytes) -> tuple[str, bool]:
    """Decode one line as UTF-8; bad bytes become U+FFFD and are reported, never fatal."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True


def _looks_like_upstream_row(text: str) -> bool:
    """A headerless line in upstream's order: commit, number, memory, status, description."""
    cells = [cell.strip() for cell in text.split("\t")]
    if len(cells) < 4 or not cells[0] or cells[3].lower() not in STATUSES:
        return False
    try:
        float(cells[1])
    except ValueError:
        return False
    return True


def _parse_row(
    line_no: int, text: str, result: TsvImport, status_map: Mapping[str, str]
) -> TsvRow | Skipped:
    columns, keys = result.columns, result.keys
    values = [v.strip() for v in text.split("\t")]
    notes: list[str] = []
    if len(values) == 1 and len(columns) > 1 and keys[-1] == "description":
        spaced = text.split(None, len(columns) - 1)
        if len(spaced) < len(columns):
            return Skipped(line_no, f"no tabs, and {len(spaced)} space-separated fields for "
                                    f"{len(columns)} columns")
        values = spaced
        notes.append("fields separated by spaces instead of tabs: read by position")
    while len(values) > len(columns) and not values[-1]:
        values.pop()
    if len(values) > len(columns):
        if columns[-1].lower() != "description":
            return Skipped(line_no, f"{len(values)} fields but the header has {len(columns)} columns")
        notes.append(f"{len(values) - len(columns)} extra tab(s) joined into description")
        values[len(columns) - 1:] = [" ".join(v for v in values[len(columns) - 1:] if v)]
    by_key = {k: values[i] if i < len(values) else "" for i, k in enumerate(keys)}
    commit = by_key["commit"]
    if not commit:
        return Skipped(line_no, "no commit")
    if not commit.strip("-=#* "):
        return Skipped(line_no, "a section heading, not an experiment")
    extra = {c: by_key[k] for c, k in zip(columns, keys) if k not in UPSTREAM_COLUMNS}
    status = by_key["status"].lower()
    if not status:
        return Skipped(line_no, f"no status ({len(values)} of {len(columns)} columns)")
    if status in status_map:
        extra["original_status"] = by_key["status"]
        status = status_map[status]
    if status not in STATUSES:
        # A fork's own status (tentative, repair, support…) is a measured run nobody kept.
        extra["original_status"] = by_key["status"]
        notes.append(f"unknown status {by_key['status']!r} imported as discard "
                     f"(expected {', '.join(STATUSES)})")
        status = "discard"
    raw_val = by_key["val_bpb"]
    try:
        val_bpb = _measurement(raw_val)
    except ValueError:
        return Skipped(line_no, f"val_bpb {raw_val!r} is not a number")
    if val_bpb is not None and val_bpb < 0:
        return Skipped(line_no, f"val_bpb {raw_val!r} is negative")
    if status == "crash" and val_bpb is not None:
        notes.append(f"crash row's val_bpb {raw_val} stored as missing (a crash measures nothing)")
        val_bpb = None
    raw_memory = by_key.get("memory_gb", "")
    try:
        memory_gb = _measurement(raw_memory)
    except ValueError:
        memory_gb = None
        notes.append(f"memory_gb {raw_memory!r} is not a number: dropped")
    if memory_gb is not None and memory_gb > MB_ABOVE:
        notes.append(f"memory_gb {raw_memory} is megabytes: stored as {memory_gb / 1024:.1f} GB")
        memory_gb /= 1024
    result.repaired.extend(Repaired(line_no, note) for note in notes)
    return TsvRow(
        line_no=line_no,
        commit=commit,
        val_bpb=val_bpb,
        memory_gb=memory_gb if memory_gb is None or memory_gb > 0 else None,
        status=status,
        description=by_key.get("description", ""),
        extra=extra,
    )


def _measurement(text: str) -> float | None:
    """A metric cell: empty, n/a, 0, nan and inf mean "not measured" (upstream writes 0.000000)."""
    if text.strip().lower() in MISSING:
        return None
    value = float(text)
    if not math.isfinite(value) or value == 0:
        return None
    return value


# ---------------------------------------------------------------------------
# Idempotent import key

def row_key(row: TsvRow) -> str:
    """A stable identity for a row (commit, status, val_bpb, description), for a UNIQUE column.

    Normalised like the export, so export -> import -> import again adds nothing.
    """
    val = "" if row.val_bpb is None else f"{row.val_bpb:.6f}"
    parts = (row.commit.strip(), row.status.lower(), val, _one_line(row.description))
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def row_fields(row: TsvRow) -> dict[str, Any]:
    """The experiment columns a row fills (the same for `cockpit import` and a vanilla agent's
    results.tsv): upstream's five, a fork's hypothesis, category and summary metrics when it has
    those columns, every extra column in summary_json, and the import key."""
    values: dict[str, Any] = dict(
        commit_sha=row.commit, description=row.description,
        hypothesis=row.extra.get("hypothesis", ""),
        category=(row.extra.get("category") or row.extra.get("kind") or "").lower(),
        decision=row.status, val_bpb=row.val_bpb,
        peak_vram_mb=None if row.memory_gb is None else row.memory_gb * 1024,
        summary_json=json.dumps(row.extra, ensure_ascii=False), import_key=row_key(row))
    for key in SUMMARY_COLUMNS:
        if key in row.extra and key not in values:
            try:
                number = float(row.extra[key].replace(",", ""))
            except ValueError:
                continue
            if math.isfinite(number):
                values[key] = int(number) if key == "num_steps" else number
    return values


# ---------------------------------------------------------------------------
# Export

class ExportRow(Protocol):
    """Anything with upstream's five fields (TsvRow or a ledger experiment adapted to it)."""

    commit: str
    val_bpb: float | None
    memory_gb: float | None
    status: str
    description: str


def write_results_tsv(rows: Iterable[ExportRow], target: str | os.PathLike[str] | IO[str]) -> int:
    """Write upstream's 5-column results.tsv; returns the number of rows written.

    Every row is checked first; a path is replaced atomically.
    """
    lines = ["\t".join(UPSTREAM_COLUMNS) + "\n"]
    lines += [_format_row(row) for row in rows]
    if hasattr(target, "write"):
        target.writelines(lines)  # type: ignore[union-attr]
        return len(lines) - 1
    path = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            out.writelines(lines)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return len(lines) - 1


def _format_row(row: ExportRow) -> str:
    status = EXPORT_STATUS.get(row.status)
    if status is None:
        raise ValueError(f"commit {row.commit!r}: status {row.status!r} cannot be exported "
                         f"(exportable: {', '.join(EXPORT_STATUS)})")
    commit = _one_line(row.commit)
    if not commit:
        raise ValueError(f"a row with status {row.status!r} has no commit")
    val = 0.0 if status == "crash" or row.val_bpb is None else row.val_bpb
    memory = 0.0 if row.memory_gb is None else row.memory_gb
    for name, number in (("val_bpb", val), ("memory_gb", memory)):
        if not math.isfinite(number):
            raise ValueError(f"commit {commit}: {name} is {number!r}")
    return f"{commit}\t{val:.6f}\t{memory:.1f}\t{status}\t{_one_line(row.description)}\n"


def _one_line(text: str) -> str:
    """Tabs and every kind of line break become spaces; ends trimmed."""
    return text.translate(_TO_SPACE).strip()
