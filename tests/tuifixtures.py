"""Test helper: a deterministic ledger for TUI tests and snapshots (fixed ids, times, logs).

Usage:
    from tuifixtures import build_ledger, FIXED_NOW
    fx = build_ledger(tmp_path)              # fx.ledger_path, fx.ids["running"], fx.now
    app = make_app(fx.ledger_path, clock=fx.clock)

Every experiment decision appears once (keep, discard, near-miss discard, crash, killed, timeout,
lost, pending review, approved, rejected, running, registered), on two tags, with three agents,
sampled steps, notes, audit events and contract-format log files. Everything is written with fixed
timestamps straight into the tables, so two builds are identical except for the tmp paths.
Other test files import this module: keep names and contents stable.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.ledger.store import Ledger

T0 = 1_741_150_000.0  # 2025-03-05 04:46:40 UTC: the fixture's first experiment
FIXED_NOW = T0 + 4 * 3600  # "now" for clock-dependent displays
TAG = "mar5"
OTHER_TAG = "mar6"
MARKUP_DESCRIPTION = "[red]x[/red] label smoothing 0.1"
ANSI_DESCRIPTION = "\x1b[31mansi red\x1b[0m tied embeddings"
SUMMARY_TAIL = {"time_budget": 300, "max_seq_len": 2048, "eval_tokens": 20971520, "vocab_size": 8192}

AGENTS = (  # name, state, branch
    ("alice", "running", f"autoresearch/{TAG}-alice"),
    ("bob", "running", f"autoresearch/{TAG}-bob"),
    ("carol", "stopped", f"autoresearch/{TAG}-carol"),
)

# name, agent, tag, status, decision, review, val_bpb, description, extra columns
EXPERIMENTS: tuple[tuple[str, str, str, str, str | None, str | None, float | None, str, dict], ...] = (
    ("baseline", "alice", TAG, "finished", "keep", None, 0.997900, "baseline", {}),
    ("discard", "alice", TAG, "finished", "discard", None, 1.001200, "double the matrix learning rate", {}),
    ("improved", "bob", TAG, "finished", "keep", None, 0.993200, "RMSNorm instead of LayerNorm", {}),
    ("crash", "bob", TAG, "finished", "crash", None, None, "mixture of experts router (4 experts)",
     {"exit_code": 1, "crash_tail": "Traceback (most recent call last):\n  File \"train.py\", line 211\n"
                                     "RuntimeError: CUDA out of memory"}),
    ("killed", "alice", TAG, "finished", "killed", None, None, "wider MLP (4x -> 6x)",
     {"reason": "killed by human"}),
    ("timeout", "bob", TAG, "finished", "timeout", None, None, "double the batch size",
     {"reason": "hard timeout after 600 s"}),
    ("lost", "carol", TAG, "finished", "lost", None, None, "rotary base 50k",
     {"reason": "runner (pid 4242) is gone"}),
    ("near_miss", "alice", TAG, "finished", "discard", None, 0.994100, "warmup 5% of the budget",
     {"near_miss": 1}),
    ("approved", "bob", TAG, "finished", "keep", "approved", 0.991000, "muon momentum 0.95", {}),
    ("rejected", "alice", TAG, "finished", "discard", "rejected", 0.992000, "remove value embeddings",
     {"reason": "rejected by human"}),
    ("pending", "bob", TAG, "finished", "pending", "pending", 0.990800, MARKUP_DESCRIPTION, {}),
    ("ansi", "carol", TAG, "finished", "discard", None, 1.010000, ANSI_DESCRIPTION, {}),
    ("running", "alice", TAG, "running", None, None, None, "deeper model (depth 10)",
     {"progress_pct": 42.0, "remaining_s": 174.0, "last_loss": 3.210100}),
    ("registered", "bob", TAG, "registered", None, None, None, "sliding window attention", {}),
    ("other_baseline", "alice", OTHER_TAG, "finished", "keep", None, 0.985000, "baseline on mar6", {}),
    ("other_discard", "alice", OTHER_TAG, "finished", "discard", None, 0.988000, "matrix lr 0.03", {}),
)

CURVES = {"baseline": 0.25, "improved": 0.15, "approved": 0.0, "running": 0.1}  # loss offsets
RUNNING_PROGRESS = 42  # steps sampled so far for the running experiment (of 100)


@dataclass(frozen=True)
class TuiFixture:
    root: Path
    ledger_path: Path
    ids: dict[str, int]  # fixture name -> experiment id (ids follow EXPERIMENTS' order from 1)
    now: float = FIXED_NOW
    agents: tuple[str, ...] = field(default=tuple(a[0] for a in AGENTS))

    def clock(self) -> float:
        return self.now

    @property
    def best_id(self) -> int:
        return self.ids["approved"]


def loss_at(pct: float, offset: float) -> float:
    """A deterministic training-loss curve: fast decay towards ~3, shifted by `offset`."""
    return round(3.0 + offset + 6.0 * math.exp(-pct / 12.0), 6)


def step_line(step: int, pct: float, loss: float) -> str:
    return (f"\rstep {step:05d} ({pct:.1f}%) | loss: {loss:.6f} | lrm: 1.00 | dt: 312ms | "
            f"tok/sec: 52,480 | mfu: 0.0% | epoch: 1 | remaining: {int(300 * (1 - pct / 100))}s    ")


def _log_text(name: str, decision: str | None, val_bpb: float | None) -> str:
    offset = CURVES.get(name, 0.3)
    last = RUNNING_PROGRESS if name == "running" else 100
    header = "Loading data from ~/.cache/autoresearch\nVocab size: 8,192\nModel: 50.3M params\n"
    steps = "".join(step_line(s, float(s), loss_at(s, offset)) for s in range(1, last + 1, 3))
    if name == "running":
        return header + steps
    if decision == "crash":
        return header + steps + "\nTraceback (most recent call last):\n  File \"train.py\", line 211\n" \
                                "RuntimeError: CUDA out of memory\n"
    if val_bpb is None:
        return header + steps + "\n"
    summary = {"val_bpb": f"{val_bpb:.6f}", "training_seconds": "300.1", "total_seconds": "325.9",
               "peak_vram_mb": "45060.2", "mfu_percent": "39.80", "total_tokens_M": "499.6",
               "num_steps": "953", "num_params_M": "50.3", "depth": "8"}
    return header + steps + "\n---\n" + "".join(f"{k + ':':<18}{v}\n" for k, v in summary.items())


def _experiment_row(index: int, spec: tuple, root: Path) -> dict[str, Any]:
    name, agent, tag, status, decision, review, val_bpb, description, extra = spec
    exp_id = index + 1
    created = T0 + index * 600
    row: dict[str, Any] = {
        "id": exp_id, "tag": tag, "agent": agent, "worktree": str(root / "worktrees" / agent),
        "branch": f"autoresearch/{tag}-{agent}", "parent_sha": f"{exp_id - 1:07x}" + "0" * 33,
        "commit_sha": f"{exp_id:07x}" + "0" * 33, "description": description,
        "hypothesis": f"hypothesis for {name}", "category": "other", "backend": "local",
        "status": status, "decision": decision, "review": review, "val_bpb": val_bpb,
        "log_path": str(root / "logs" / f"{exp_id}.log"), "created_at": created,
        "started_at": None if status == "registered" else created + 5,
        "finished_at": created + 330 if status == "finished" else None,
        "heartbeat_at": FIXED_NOW - 1 if status == "running" else None,
        # every row carries every key: insert_all writes NULL, not the column default, for a gap
        "reason": "", "crash_tail": "", "exit_code": None, "near_miss": 0, "progress_pct": None,
        "remaining_s": None, "last_loss": None, "device": "", "summary_json": "", **extra,
    }
    if val_bpb is not None:
        row.update(training_seconds=300.1, total_seconds=325.9, peak_vram_mb=45060.2, mfu_percent=39.8,
                   total_tokens_M=499.6, num_steps=953, num_params_M=50.3, depth=8, device="cuda",
                   summary_json=json.dumps({"val_bpb": val_bpb, "num_steps": 953, **SUMMARY_TAIL}),
                   **SUMMARY_TAIL)
    return row


def _events(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    events = []
    for row in rows:
        base = {"experiment_id": row["id"], "agent": row["agent"]}
        events.append({**base, "at": row["created_at"], "kind": "register", "actor": "runner",
                       "detail": json.dumps({"description": row["description"]})})
        if row["started_at"]:
            events.append({**base, "at": row["started_at"], "kind": "start", "actor": "runner",
                           "detail": "{}"})
        if row["finished_at"]:
            events.append({**base, "at": row["finished_at"], "kind": "decide", "actor": "runner",
                           "detail": json.dumps({"decision": row["decision"]})})
        if row["review"] in ("approved", "rejected"):
            events.append({**base, "at": row["finished_at"] + 60, "actor": "human",
                           "kind": "approve" if row["review"] == "approved" else "reject",
                           "detail": "{}"})
    return events


def _steps(ids: dict[str, int], created: dict[int, float]) -> list[dict[str, Any]]:
    steps = []
    for name, offset in CURVES.items():
        exp_id = ids[name]
        last = RUNNING_PROGRESS if name == "running" else 100
        for step in range(1, last + 1):
            steps.append({"experiment_id": exp_id, "step": step, "t": created[exp_id] + 5 + 3 * step,
                          "progress_pct": float(step), "loss": loss_at(step, offset), "lrm": 1.0,
                          "dt_ms": 312.0, "tok_per_sec": 52480.0, "mfu_pct": 0.0,
                          "remaining_s": 300.0 * (1 - step / 100)})
    return steps


def build_ledger(root: Path, *, with_logs: bool = True) -> TuiFixture:
    """Write the fixture ledger (and logs) under `root`; returns the ids by fixture name."""
    root.mkdir(parents=True, exist_ok=True)
    ledger_path = root / "ledger.db"
    rows = [_experiment_row(i, spec, root) for i, spec in enumerate(EXPERIMENTS)]
    ids = {spec[0]: row["id"] for spec, row in zip(EXPERIMENTS, rows)}
    created = {row["id"]: row["created_at"] for row in rows}
    with Ledger(ledger_path) as ledger, ledger.write():
        ledger.db["agents"].insert_all(
            {"name": name, "tag": TAG, "branch": branch, "worktree": str(root / "worktrees" / name),
             "command": "claude", "kind": "llm", "state": state, "created_at": T0 - 60,
             "updated_at": T0} for name, state, branch in AGENTS)
        ledger.db["experiments"].insert_all(rows)
        ledger.db["steps"].insert_all(_steps(ids, created))
        ledger.db["events"].insert_all(_events(rows))
        ledger.db["notes"].insert_all([
            {"at": T0 + 3 * 3600, "text": "momentum 0.95 is the sweet spot", "author": "human",
             "experiment_id": ids["approved"], "agent": "bob"},
            {"at": T0 + 3 * 3600 + 60, "text": "matrix lr above 0.05 diverges", "author": "alice",
             "experiment_id": None, "agent": "alice"},
        ])
    if with_logs:
        (root / "logs").mkdir(exist_ok=True)
        for spec, row in zip(EXPERIMENTS, rows):
            if row["status"] != "registered":
                Path(row["log_path"]).write_text(_log_text(spec[0], row["decision"], row["val_bpb"]))
    return TuiFixture(root=root, ledger_path=ledger_path, ids=ids)


def fixed_clock(now: float = FIXED_NOW) -> Callable[[], float]:
    return lambda: now


def notifications(app) -> list[tuple[str, str]]:
    """Wrap app.notify so a test can read what the user was told: (message, severity)."""
    seen: list[tuple[str, str]] = []
    original = app.notify

    def notify(message, *args, severity="information", **kwargs):
        seen.append((str(message), severity))
        return original(message, *args, severity=severity, **kwargs)

    app.notify = notify
    return seen
