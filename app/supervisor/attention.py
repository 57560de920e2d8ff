"""What needs a human, from what the ledger and the supervisor know (pure: no I/O).

Usage:
    items = collect(AttentionInputs(now, pending, agents, bests, supervisor), settings)
    labels = agent_labels(items)          # {"ada": "review"}: shown instead of `running`
    line = prompt_line(pane_text, extra)   # the prompt an idle pane shows, or None

Each item has a stable `key`: the supervisor pushes a notification when a key first appears.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from app.config import Settings
from app.ledger.records import Experiment
from app.ledger.supervisor import AgentActivity, NewBest, SupervisorRow
from app.logs.textsafe import sanitize
from app.policy import crash_streak

KINDS = ("review", "waiting", "stuck", "crash-streak", "new-best", "supervisor")
HEARTBEAT_STALE_S = 15.0  # a supervisor silent this long is taken for dead
NEW_BEST_WINDOW_S = 3600.0  # a new best stays on the list this long
DEFAULT_BUDGET_S = 300.0  # autoresearch's time budget, when no experiment says otherwise
PANE_LINES = 15  # the last non-blank lines of a pane that are searched for a prompt
PROMPTS = (  # an idle pane whose last lines match one of these waits for its human
    r"Do you want to (proceed|make this edit|create|run|allow)",  # Claude Code: permission
    r"❯\s*\d+\.\s",  # Claude Code: a numbered choice
    r"\? for shortcuts",  # Claude Code (and newer Codex): the empty input box
    r"Allow (command|this)\?",  # Codex: approval
    r"Would you like to run the following command",  # Codex: approval
    r"⏎ send",  # Codex: the input box's footer
    r"▌\s*(Ask Codex|Explain this|Find and fix|Improve|Summarize|Write tests)",  # Codex: placeholder
    r"\[y/N\]|\[Y/n\]|\(y/n\)",  # any shell-ish confirmation
)
BUSY = re.compile(r"esc to interrupt", re.IGNORECASE)  # both agents say this while they work


@dataclass(frozen=True)
class AttentionItem:
    kind: str  # one of KINDS
    key: str  # stable identity of this occurrence
    title: str  # one line for humans; text from panes is sanitized, names are validated
    agent: str = ""
    experiment_id: int | None = None
    val_bpb: float | None = None
    delta: float | None = None
    since: float = 0.0
    detail: str = ""  # the experiment's description: untrusted, sanitized wherever it is shown

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AttentionInputs:
    now: float
    pending: Sequence[Experiment] = ()
    agents: Sequence[AgentActivity] = ()
    bests: Sequence[NewBest] = ()
    supervisor: SupervisorRow | None = None


def supervisor_alive(row: SupervisorRow | None, now: float) -> bool:
    return (row is not None and row.state == "running" and row.heartbeat_at is not None
            and now - row.heartbeat_at < HEARTBEAT_STALE_S)


def collect(inputs: AttentionInputs, settings: Settings) -> list[AttentionItem]:
    """Everything that needs a human now, the most urgent kinds first."""
    items = [_review(exp) for exp in inputs.pending]
    items += _waiting(inputs.supervisor)
    for agent in inputs.agents:
        items += _agent_items(agent, inputs.now, settings)
    items += [_best(best) for best in inputs.bests
              if inputs.now - (best.experiment.finished_at or 0.0) < NEW_BEST_WINDOW_S]
    items += _supervisor(inputs.supervisor, inputs.now)
    return sorted(items, key=lambda item: (KINDS.index(item.kind), item.since, item.key))


def _review(exp: Experiment) -> AttentionItem:
    return AttentionItem("review", f"review:{exp.id}", f"#{exp.id} awaits review "
                         f"(val_bpb {exp.val_bpb_text}, {exp.agent or '?'})", agent=exp.agent,
                         experiment_id=exp.id, val_bpb=exp.val_bpb, delta=exp.delta,
                         since=exp.finished_at or exp.created_at, detail=exp.description)


def _waiting(row: SupervisorRow | None) -> list[AttentionItem]:
    if row is None:
        return []
    out = []
    for name, info in sorted(row.waiting.items()):
        since = float(info.get("since") or 0.0)
        prompt = " ".join(sanitize(str(info.get("prompt") or "")).split())
        out.append(AttentionItem("waiting", f"waiting:{name}:{since:.0f}",
                                 f"agent {name} waits for input: {prompt}", agent=name, since=since))
    return out


def _agent_items(agent: AgentActivity, now: float, settings: Settings) -> list[AttentionItem]:
    out = []
    streak = crash_streak([exp.decision for exp in agent.recent])
    if streak >= settings.crash_streak and agent.recent:
        newest = agent.recent[0]
        out.append(AttentionItem("crash-streak", f"crash-streak:{agent.name}:{newest.id}",
                                 f"agent {agent.name}: {streak} crashes in a row (stop and rethink)",
                                 agent=agent.name, experiment_id=newest.id,
                                 since=newest.finished_at or newest.created_at,
                                 detail=newest.description))
    if agent.state == "running" and not agent.live:
        last = agent.last_started or agent.created_at
        limit = settings.stuck_factor * (agent.time_budget or DEFAULT_BUDGET_S)
        if last and now - last > limit:
            out.append(AttentionItem("stuck", f"stuck:{agent.name}:{last:.0f}",
                                     f"agent {agent.name}: no experiment for {_ago(now - last)}",
                                     agent=agent.name, since=last + limit))
    return out


def _best(best: NewBest) -> AttentionItem:
    exp = best.experiment
    delta = (exp.val_bpb or 0.0) - best.previous
    return AttentionItem("new-best", f"new-best:{exp.id}",
                         f"new best of {exp.tag or 'untagged'}: #{exp.id} val_bpb "
                         f"{exp.val_bpb_text} ({delta:+.6f}, {exp.agent or '?'})", agent=exp.agent,
                         experiment_id=exp.id, val_bpb=exp.val_bpb, delta=delta,
                         since=exp.finished_at or exp.created_at, detail=exp.description)


def _supervisor(row: SupervisorRow | None, now: float) -> list[AttentionItem]:
    if row is not None and row.state == "error":
        return [AttentionItem("supervisor", "supervisor:error",
                              f"supervisor stopped: {sanitize(row.message)}",
                              since=row.heartbeat_at or now)]
    if not supervisor_alive(row, now):
        since = row.heartbeat_at if row and row.heartbeat_at else now
        return [AttentionItem("supervisor", "supervisor:down",
                              "no supervisor: vanilla runs are not recorded (cockpit supervise)",
                              since=since)]
    return []


def _ago(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def agent_labels(items: Iterable[AttentionItem]) -> dict[str, str]:
    """What an agent's state cell says instead of `running`: it waits for review or for input."""
    labels: dict[str, str] = {}
    for item in items:
        if item.kind == "waiting" and item.agent:
            labels[item.agent] = "waiting"
        elif item.kind == "review" and item.agent:
            labels.setdefault(item.agent, "review")
    return labels


def compile_prompts(extra: Iterable[str] = ()) -> list[re.Pattern[str]]:
    """The built-in prompt patterns plus configured ones (invalid ones raise re.error)."""
    return [re.compile(pattern) for pattern in (*PROMPTS, *extra)]


def prompt_line(text: str, patterns: Sequence[re.Pattern[str]]) -> str | None:
    """The line of a pane's end that shows a prompt, or None (also while the agent says it works)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()][-PANE_LINES:]
    if any(BUSY.search(line) for line in lines):
        return None
    for line in lines:
        if any(pattern.search(line) for pattern in patterns):
            return line[:120]
    return None
