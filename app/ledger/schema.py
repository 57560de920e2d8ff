"""Ledger schema and migrations; `PRAGMA user_version` holds the version."""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.ledger import chain
from app.policy.comparability import comparability_key

if TYPE_CHECKING:
    import sqlite_utils


# Summary keys that get a column of their own (everything is also kept in summary_json).
SUMMARY_COLUMNS = (
    "val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent",
    "total_tokens_M", "num_steps", "num_params_M", "depth",
    "time_budget", "max_seq_len", "eval_tokens", "vocab_size",
)


def _v1(db: sqlite_utils.Database) -> None:
    db.table("experiments").create({
        "id": int, "tag": str, "agent": str, "worktree": str, "branch": str,
        "parent_sha": str, "commit_sha": str, "description": str, "hypothesis": str,
        "category": str, "backend": str, "status": str, "decision": str, "review": str,
        "reason": str,
        "val_bpb": float, "training_seconds": float, "total_seconds": float,
        "peak_vram_mb": float, "mfu_percent": float, "total_tokens_M": float, "num_steps": int,
        "num_params_M": float, "depth": int,
        "time_budget": float, "max_seq_len": int, "eval_tokens": int, "vocab_size": int,
        "device": str, "summary_json": str,
        "delta": float, "margin": float, "near_miss": int, "contended": int, "integrity": int,
        "needs_rerun": int, "repeat_of": int, "exit_code": int,
        "log_path": str, "pid": int, "pid_start": float, "runner_pid": int,
        "runner_start": float, "modal_call_id": str,
        "progress_pct": float, "last_loss": float, "remaining_s": float, "crash_tail": str,
        "kill_requested_at": float, "adopted_sha": str, "import_key": str,
        "created_at": float, "started_at": float, "finished_at": float, "heartbeat_at": float,
    }, pk="id", not_null={"created_at"},
        defaults={"tag": "", "agent": "", "worktree": "", "branch": "", "parent_sha": "",
                  "commit_sha": "", "description": "", "hypothesis": "", "category": "",
                  "backend": "local", "status": "registered", "reason": "", "device": "",
                  "summary_json": "", "near_miss": 0, "contended": 0, "integrity": 0,
                  "needs_rerun": 0, "log_path": "", "modal_call_id": "", "crash_tail": "",
                  "adopted_sha": ""})
    db.execute("CREATE UNIQUE INDEX idx_experiments_import_key ON experiments(import_key)")
    db.table("experiments").create_index(["tag"])
    db.table("experiments").create_index(["agent"])
    db.table("experiments").create_index(["branch", "decision"])
    db.table("experiments").create_index(["status"])

    db.table("steps").create({
        "id": int, "experiment_id": int, "step": int, "t": float, "progress_pct": float,
        "loss": float, "lrm": float, "dt_ms": float, "tok_per_sec": float, "mfu_pct": float,
        "remaining_s": float,
    }, pk="id", foreign_keys=[("experiment_id", "experiments", "id")], not_null={"experiment_id"})
    db.table("steps").create_index(["experiment_id", "step"])

    db.table("events").create({
        "id": int, "at": float, "kind": str, "experiment_id": int, "agent": str, "actor": str,
        "detail": str,
    }, pk="id", foreign_keys=[("experiment_id", "experiments", "id")],
        not_null={"at", "kind"}, defaults={"agent": "", "actor": "", "detail": "{}"})
    db.table("events").create_index(["experiment_id"])
    db.execute("CREATE TRIGGER events_append_only_update BEFORE UPDATE ON events "
               "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")
    db.execute("CREATE TRIGGER events_append_only_delete BEFORE DELETE ON events "
               "BEGIN SELECT RAISE(ABORT, 'events are append-only'); END")

    db.table("notes").create({
        "id": int, "at": float, "text": str, "experiment_id": int, "agent": str, "author": str,
    }, pk="id", foreign_keys=[("experiment_id", "experiments", "id")], not_null={"at", "text"},
        defaults={"agent": "", "author": ""})
    db.table("notes").create_index(["experiment_id"])

    db.table("agents").create({
        "name": str, "tag": str, "branch": str, "worktree": str, "command": str, "kind": str,
        "state": str, "pane_id": str, "tmux_socket": str, "pid": int, "pid_start": float,
        "created_at": float, "updated_at": float,
    }, pk="name", defaults={"tag": "", "branch": "", "worktree": "", "command": "",
                            "kind": "llm", "state": "idle", "pane_id": "", "tmux_socket": ""})


def _v2(db: sqlite_utils.Database) -> None:
    """The GPU pool: leases of devices (or Modal slots) to runs, and the devices a pool has."""
    db.table("experiments").add_column("gpu_ids", str, not_null_default="")
    db.table("experiments").add_column("gpu_model", str, not_null_default="")
    leases = db.table("leases")
    leases.create({
        "id": int, "pool": str, "slots": str, "experiment_id": int, "agent": str,
        "holder_pid": int, "holder_start": float, "state": str, "reason": str,
        "requested_at": float, "acquired_at": float, "released_at": float,
    }, pk="id", foreign_keys=[("experiment_id", "experiments", "id")],
        not_null={"pool", "state", "requested_at"},
        defaults={"slots": "", "agent": "", "reason": ""})
    leases.create_index(["pool", "state"])
    leases.create_index(["released_at"])
    db.table("gpu_devices").create({
        "pool": str, "slot": str, "model": str, "util_pct": float, "mem_used_mb": float,
        "mem_total_mb": float, "temp_c": float, "sampled_at": float, "seen_at": float,
    }, pk=("pool", "slot"), not_null={"pool", "slot"}, defaults={"model": ""})


def _v3(db: sqlite_utils.Database) -> None:
    """Trust: the implausible flag; events chained by hash, each recording the state of its
    experiment (chain.py); an existing ledger gets its chain computed and its rows sealed."""
    db.table("experiments").add_column("implausible", int, not_null_default=0)
    db.table("events").add_column("state", str, not_null_default="")
    db.table("events").add_column("hash", str, not_null_default="")
    chain.seal_existing(db.conn, time.time())


def _v5(db: sqlite_utils.Database) -> None:
    """Comparability: each run's key (eval constants + device class + attention path) and the
    not-comparable flag; existing runs get the key their stored summary gives (NULL: unknown)."""
    db.execute("ALTER TABLE experiments ADD COLUMN compare_key TEXT")
    db.execute("ALTER TABLE experiments ADD COLUMN not_comparable INTEGER NOT NULL DEFAULT 0")
    rows = db.execute("SELECT id, summary_json FROM experiments WHERE summary_json != ''").fetchall()
    for exp_id, summary_json in rows:
        try:
            summary = json.loads(summary_json)
        except ValueError:
            continue
        key = comparability_key(summary) if isinstance(summary, dict) else None
        if key is not None:
            db.execute("UPDATE experiments SET compare_key = ? WHERE id = ?", (key, exp_id))


def _v4(db: sqlite_utils.Database) -> None:
    """The supervisor's row: who runs, its heartbeat, trouble, and what it has already told."""
    db.table("supervisor").create({
        "id": int, "pid": int, "pid_start": float, "host": str, "state": str, "message": str,
        "started_at": float, "heartbeat_at": float, "waiting_json": str, "notified_json": str,
    }, pk="id", defaults={"host": "", "state": "stopped", "message": "", "waiting_json": "{}",
                          "notified_json": "[]"})


# The cockpit's own measurement of val_bpb (app/run/trusted.py): what train.py printed, what the
# cockpit measured from the final weights, what it cost, the runner's clock on training, and the
# flags a measurement can raise. `val_bpb` stays the value the decision rests on.
TRUST_FLAGS = ("metric_mismatch", "non_causal", "over_budget", "unmeasured")


def _v6(db: sqlite_utils.Database) -> None:
    table = db.table("experiments")
    for column in ("reported_val_bpb", "measured_val_bpb", "trusted_eval_s", "train_wall_s"):
        table.add_column(column, float)
    for flag in TRUST_FLAGS:
        table.add_column(flag, int, not_null_default=0)


# MIGRATIONS[n] upgrades a ledger to version n, inside one BEGIN IMMEDIATE transaction.
MIGRATIONS: dict[int, Callable[[sqlite_utils.Database], None]] = {1: _v1, 2: _v2, 3: _v3, 4: _v4,
                                                                  5: _v5, 6: _v6}
SCHEMA_VERSION = max(MIGRATIONS)
