"""Ledger read-outs for `history`, `best`, `report` and `suggest` (the CLI and the TUI share them).

Plain dicts out (JSON-ready). History streams row by row so a 100k-experiment ledger costs
constant memory; the aggregates run in SQL.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from app.ledger.store import Experiment, Ledger
from app.ledger.vocabulary import KEPT_SQL
from app.policy import PastExperiment, suggest

HISTORY_COLUMNS = (
    "id", "tag", "agent", "branch", "commit_sha", "parent_sha", "description", "hypothesis",
    "category", "backend", "status", "decision", "review", "reason", "val_bpb", "delta", "margin",
    "near_miss", "contended", "integrity", "implausible", "needs_rerun", "repeat_of", "exit_code",
    "training_seconds", "peak_vram_mb", "mfu_percent", "num_steps", "num_params_M",
    "time_budget", "max_seq_len", "eval_tokens", "vocab_size", "device",
    "progress_pct", "last_loss", "remaining_s", "log_path", "adopted_sha",
    "created_at", "started_at", "finished_at",
)


def _where(filters: dict[str, Any]) -> tuple[str, list[Any]]:
    clauses, args = ["1"], []
    for column, value in filters.items():
        if value is not None:
            clauses.append(f"{column} = ?")
            args.append(value)
    return " AND ".join(clauses), args


def _history_rows(ledger: Ledger, select: str, limit: int | None,
                  filters: dict[str, Any]) -> Iterator[tuple]:
    where, args = _where(filters)
    if limit:
        sql = (f"SELECT {select} FROM (SELECT * FROM experiments WHERE {where} "
               f"ORDER BY id DESC LIMIT ?) ORDER BY id")
        args.append(limit)
    else:
        sql = f"SELECT {select} FROM experiments WHERE {where} ORDER BY id"
    return ledger.conn.execute(sql, args)


def history(ledger: Ledger, *, limit: int | None = 50, **filters: Any) -> Iterator[dict[str, Any]]:
    """Experiments matching `filters` (column=value), oldest first; the newest `limit` of them."""
    for row in _history_rows(ledger, ", ".join(HISTORY_COLUMNS), limit, filters):
        yield dict(zip(HISTORY_COLUMNS, row, strict=True))


# SQLite writes infinities as `Inf`, which is not JSON: they become null, as in print_json.
_JSON_OBJECT = "json_object({})".format(", ".join(
    f"'{c}', CASE WHEN typeof({c}) = 'real' AND abs({c}) > 1.7976931348623157e308 "
    f"THEN NULL ELSE {c} END" for c in HISTORY_COLUMNS))


def history_json(ledger: Ledger, *, limit: int | None = 50, **filters: Any) -> Iterator[str]:
    """history() as one JSON object per row, built by SQLite: ~10x faster on 100k rows."""
    for (text,) in _history_rows(ledger, _JSON_OBJECT, limit, filters):
        yield text


def experiment_detail(ledger: Ledger, exp: Experiment) -> dict[str, Any]:
    """Everything about one experiment: its fields, parsed summary, events and notes."""
    fields = {k: v for k, v in vars(exp).items() if k != "summary_json"}
    fields["summary"] = exp.summary
    fields["steps_recorded"] = ledger.conn.execute(
        "SELECT COUNT(*) FROM steps WHERE experiment_id = ?", (exp.id,)).fetchone()[0]
    fields["events"] = [{"at": e.at, "kind": e.kind, "actor": e.actor, "detail": e.detail}
                        for e in ledger.events(exp.id)]
    fields["notes"] = [{"id": n.id, "at": n.at, "text": n.text, "author": n.author}
                       for n in ledger.notes(experiment_id=exp.id)]
    return fields


def brief(exp: Experiment) -> dict[str, Any]:
    return {"id": exp.id, "tag": exp.tag, "agent": exp.agent, "branch": exp.branch,
            "commit": exp.commit_sha[:7], "val_bpb": exp.val_bpb, "description": exp.description,
            "decision": exp.decision, "status": exp.status, "compare_key": exp.compare_key}


def overview(ledger: Ledger, recent: int = 5) -> dict[str, Any]:
    """What is going on now: live runs, reviews waiting, the last finished runs."""
    pending = ledger.conn.execute(
        "SELECT id FROM experiments WHERE review = 'pending' ORDER BY id").fetchall()
    finished = ledger.experiments(status="finished", newest_first=True, limit=recent)
    return {
        "live": [{**brief(e), "progress_pct": e.progress_pct, "last_loss": e.last_loss,
                  "remaining_s": e.remaining_s, "started_at": e.started_at,
                  "kill_requested": e.kill_requested_at is not None} for e in ledger.live()],
        "pending_review": [brief(ledger.get(r[0])) for r in pending],
        "recent": [{**brief(e), "reason": e.reason} for e in reversed(finished)],
    }


def best_by_tag(ledger: Ledger, **filters: Any) -> dict[str, dict[str, Any]]:
    where, args = _where(filters)
    best: dict[str, int] = {}
    rows = ledger.conn.execute(
        f"SELECT id, tag, val_bpb FROM experiments WHERE {KEPT_SQL} AND {where} "
        "ORDER BY val_bpb DESC, id DESC", args)
    for exp_id, tag, _ in rows:  # ascending quality: the last one written per tag wins
        best[tag] = exp_id
    return {tag: brief(ledger.get(exp_id)) for tag, exp_id in sorted(best.items())}


def best_overall(ledger: Ledger, **filters: Any) -> dict[str, Any] | None:
    where, args = _where(filters)
    row = ledger.conn.execute(f"SELECT id FROM experiments WHERE {KEPT_SQL} AND {where} "
                              "ORDER BY val_bpb, id LIMIT 1", args).fetchone()
    return brief(ledger.get(row[0])) if row else None


def summary_report(ledger: Ledger, **filters: Any) -> dict[str, Any]:
    """n-autoresearch's report: counts, keep rate, best per tag, progression, categories, minutes."""
    where, args = _where(filters)
    counts = dict(ledger.conn.execute(
        f"SELECT COALESCE(decision, status), COUNT(*) FROM experiments WHERE {where} "
        "GROUP BY 1", args).fetchall())
    decided = sum(counts.get(k, 0) for k in ("keep", "discard", "crash", "timeout"))
    minutes = ledger.conn.execute(
        f"SELECT COALESCE(SUM(training_seconds), 0) / 60.0 FROM experiments WHERE {where}",
        args).fetchone()[0]
    categories: dict[str, dict[str, int]] = {}
    for category, decision, n in ledger.conn.execute(
            f"SELECT category, decision, COUNT(*) FROM experiments WHERE {where} "
            "GROUP BY category, decision", args):
        entry = categories.setdefault(category or "(none)", {"runs": 0, "keep": 0})
        entry["runs"] += n
        entry["keep"] += n if decision == "keep" else 0
    return {
        "total": sum(counts.values()),
        "by_decision": counts,
        "keep_rate": round(counts.get("keep", 0) / decided, 4) if decided else None,
        "best_by_tag": best_by_tag(ledger, **filters),
        "progression": progression(ledger, **filters),
        "categories": dict(sorted(categories.items(), key=lambda kv: -kv[1]["runs"])),
        "training_minutes": round(minutes, 1),
    }


def progression(ledger: Ledger, **filters: Any) -> list[dict[str, Any]]:
    """Kept runs that set a new best for their tag, in order: the path of improvement."""
    where, args = _where(filters)
    bests: dict[str, float] = {}
    steps = []
    for exp_id, tag, val, description in ledger.conn.execute(
            f"SELECT id, tag, val_bpb, description FROM experiments WHERE {KEPT_SQL} AND {where} "
            "ORDER BY id", args):
        previous = bests.get(tag)
        if previous is None or val < previous:
            steps.append({"id": exp_id, "tag": tag, "val_bpb": val, "description": description,
                          "improvement": None if previous is None else round(previous - val, 9)})
            bests[tag] = val
    return steps


def suggestion(ledger: Ledger, notes: int = 5, **filters: Any) -> dict[str, Any]:
    """policy.suggest over the matching history, with the near-misses and notes spelled out."""
    where, args = _where(filters)
    past = [PastExperiment(id=r[0], decision=r[1], category=r[2], near_miss=bool(r[3]))
            for r in ledger.conn.execute(
                f"SELECT id, decision, category, near_miss FROM experiments WHERE {where} "
                "AND repeat_of IS NULL ORDER BY id", args)]
    result = suggest(past)
    near = [brief(ledger.get(int(i))) for i in result.near_misses[:5]]
    memory = ledger.notes(limit=notes)
    return {
        "strategy": result.strategy, "reason": result.reason, "advice": result.advice,
        "finished": result.finished, "recent_keep_rate": result.recent_keep_rate,
        "recent_crash_rate": result.recent_crash_rate, "near_misses": near,
        "underexplored": result.underexplored, "category_counts": result.category_counts,
        "notes": [{"id": n.id, "text": n.text, "experiment_id": n.experiment_id,
                   "author": n.author} for n in memory],
    }
