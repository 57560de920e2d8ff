"""Typed rows of the ledger's tables: what every query returns."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from app.comparability import comparability_key
from app.ledger import vocabulary
from app.ledger.schema import SUMMARY_COLUMNS
from app.ledger.vocabulary import FOREIGN_BACKENDS, LIVE_STATUSES

__all__ = ["AGENT_COLUMNS", "EXPERIMENT_COLUMNS", "LIVE_STATUSES", "Agent", "Event", "Experiment",
           "Note", "StepRow", "finite", "summary_columns"]


@dataclass
class Experiment:
    id: int
    tag: str = ""
    agent: str = ""
    worktree: str = ""
    branch: str = ""
    parent_sha: str = ""
    commit_sha: str = ""
    description: str = ""
    hypothesis: str = ""
    category: str = ""
    backend: str = "local"
    status: str = "registered"
    decision: str | None = None
    review: str | None = None
    reason: str = ""
    val_bpb: float | None = None
    training_seconds: float | None = None
    total_seconds: float | None = None
    peak_vram_mb: float | None = None
    mfu_percent: float | None = None
    total_tokens_M: float | None = None
    num_steps: int | None = None
    num_params_M: float | None = None
    depth: int | None = None
    time_budget: float | None = None
    max_seq_len: int | None = None
    eval_tokens: int | None = None
    vocab_size: int | None = None
    device: str = ""
    summary_json: str = ""
    delta: float | None = None
    margin: float | None = None
    near_miss: int = 0
    contended: int = 0
    integrity: int = 0
    implausible: int = 0
    needs_rerun: int = 0
    repeat_of: int | None = None
    exit_code: int | None = None
    log_path: str = ""
    pid: int | None = None
    pid_start: float | None = None
    runner_pid: int | None = None
    runner_start: float | None = None
    modal_call_id: str = ""
    progress_pct: float | None = None
    last_loss: float | None = None
    remaining_s: float | None = None
    crash_tail: str = ""
    kill_requested_at: float | None = None
    adopted_sha: str = ""
    import_key: str | None = None
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    gpu_ids: str = ""  # the leased devices, as handed to CUDA_VISIBLE_DEVICES ("0", "0,1", "modal:2")
    gpu_model: str = ""  # their model as NVML names it ("" when declared without NVML)
    compare_key: str | None = None  # eval constants | device class | attention path (None: unknown)
    not_comparable: int = 0
    reported_val_bpb: float | None = None  # what train.py printed
    measured_val_bpb: float | None = None  # what the cockpit measured from the final weights
    trusted_eval_s: float | None = None  # seconds the cockpit's own evaluation took
    train_wall_s: float | None = None  # training time on the runner's clock
    metric_mismatch: int = 0
    non_causal: int = 0
    over_budget: int = 0
    unmeasured: int = 0

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.summary_json) if self.summary_json else {}

    @property
    def val_bpb_text(self) -> str:
        return "—" if self.val_bpb is None else f"{self.val_bpb:.6f}"

    @property
    def is_foreign(self) -> bool:
        """From a results.tsv or a watched run.log: the agent's word, not the cockpit's measure."""
        return self.backend in FOREIGN_BACKENDS

    @property
    def is_live(self) -> bool:
        return vocabulary.is_live(self)

    @property
    def effective_decision(self) -> str:
        """What a human sees: the decision, or the lifecycle status while there is none."""
        return vocabulary.state_of(self)


@dataclass
class Event:
    id: int
    at: float
    kind: str
    experiment_id: int | None = None
    agent: str = ""
    actor: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Note:
    id: int
    at: float
    text: str
    experiment_id: int | None = None
    agent: str = ""
    author: str = ""


@dataclass
class Agent:
    name: str
    tag: str = ""
    branch: str = ""
    worktree: str = ""
    command: str = ""
    kind: str = "llm"
    state: str = "idle"
    pane_id: str = ""
    tmux_socket: str = ""
    pid: int | None = None
    pid_start: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class StepRow:
    step: int
    t: float
    progress_pct: float | None = None
    loss: float | None = None
    lrm: float | None = None
    dt_ms: float | None = None
    tok_per_sec: float | None = None
    mfu_pct: float | None = None
    remaining_s: float | None = None


EXPERIMENT_COLUMNS = tuple(f.name for f in fields(Experiment))
AGENT_COLUMNS = tuple(f.name for f in fields(Agent))


def finite(value: Any) -> float | None:
    """`value` as a float if it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def summary_columns(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary keys that have their own experiment column (numeric columns take finite
    numbers only), plus the full summary as JSON."""
    values = {key: summary[key] for key in SUMMARY_COLUMNS
              if key in summary and finite(summary[key]) is not None}
    values["summary_json"] = json.dumps(summary, default=str)
    if "device" in summary:
        values["device"] = str(summary["device"])
    if comparability_key(summary) is not None:
        values["compare_key"] = comparability_key(summary)
    return values
