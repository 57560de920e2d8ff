"""The dashboard's two one-line summaries as text: the header (best of the tag in view, counts,
the ledger's path last so that a long path is cut at the right edge, never the best) and the
experiments table's status line (window, filters, sort, marked run)."""
from __future__ import annotations

from pathlib import Path

from rich.text import Text

from app.logs.textsafe import sanitize
from app.tui.poller import DashboardData
from app.tui.screens.attention import attention_part

NO_MATCH_TEXT = "No experiment matches these filters: escape clears them."


def display_path(path: Path) -> str:
    """Short form for the status bar: relative to the working directory, or with ~ for home."""
    for base, prefix in ((Path.cwd(), ""), (Path.home(), "~/")):
        try:
            return prefix + str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            continue
    return str(path)


def header_text(data: DashboardData | None, ledger_path: Path, read_only: bool) -> Text:
    """Attention first (app/tui/screens/attention.py): it must stay visible at 80 columns."""
    text = Text("cockpit", style="bold")
    if data is not None:
        text.append(" · ").append_text(attention_part(data))
        tag = data.progression.tag if data.progression is not None else None
        if tag in data.best:
            best = data.best[tag]
            text.append(f" · best {sanitize(best.tag)} {best.val_bpb_text} (#{best.id})")
        elif tag is not None:
            text.append(f" · {sanitize(tag)}: no kept run yet")
        text.append(f" · {data.experiment_count:,} experiments · {len(data.live)} live")
    if read_only:
        text.append(" · read-only", style="bold")
    text.append(f" · {sanitize(display_path(ledger_path))}")
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


def table_status_text(data: DashboardData, marked_id: int | None) -> Text:
    query = data.query
    text = Text(f"{len(data.rows):,} of {data.total:,}" if data.total > len(data.rows)
                else f"{data.total:,} experiments")
    for label, value in (("tag", query.tag), ("agent", query.agent), ("decision", query.state)):
        if value is not None:
            text.append(f" · {label} {sanitize(value)}")
    if query.search:
        text.append(f" · search “{sanitize(query.search)}”")
    text.append(f" · sorted by {query.sort}")
    if marked_id is not None:
        text.append(f" · marked #{marked_id} (c compares)")
    if data.experiment_count and not data.rows:
        text.append(f" · {NO_MATCH_TEXT}")
    return text
