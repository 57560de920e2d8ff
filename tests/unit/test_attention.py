"""Attention (app/supervisor/attention.py): what needs a human, from ledger rows and the
supervisor's observations; prompts of Claude Code and Codex panes; `cockpit attention --json`;
an agent's real tmux pane showing a prompt becomes `waiting`."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from app.agents import panes
from app.config import Settings
from app.ledger.records import Experiment
from app.ledger.store import Ledger
from app.ledger.supervisor import (
    AgentActivity,
    NewBest,
    SupervisorRow,
    write_supervisor,
)
from app.run.procs import process_identity
from app.supervisor import attention
from app.supervisor.status import current_attention
from app.supervisor.upkeep import PaneWatch
from runnerhelpers import cli, make_project
from tuiagents import TmuxServer, register_agent
from waiting import wait_for

NOW = 1_800_000_000.0
ALIVE = SupervisorRow(state="running", heartbeat_at=NOW - 2)


def crash(exp_id: int) -> Experiment:
    return Experiment(id=exp_id, agent="ada", status="finished", decision="crash",
                      created_at=NOW - 600, finished_at=NOW - 500, description=f"try {exp_id}")


def activity(**overrides) -> AgentActivity:
    values = {"name": "ada", "state": "running", "created_at": NOW - 7200, "live": False,
              "last_started": NOW - 60, "time_budget": 300.0, "recent": ()}
    return AgentActivity(**{**values, **overrides})


def kinds(items) -> list[str]:
    return [item.kind for item in items]


def test_nothing_needs_you_when_all_is_well() -> None:
    assert attention.collect(attention.AttentionInputs(NOW, agents=[activity()], supervisor=ALIVE),
                             Settings()) == []


def test_each_kind_in_urgency_order_with_stable_keys() -> None:
    pending = Experiment(id=7, agent="bob", review="pending", val_bpb=0.97, delta=-0.01,
                         finished_at=NOW - 30)
    best = NewBest(Experiment(id=9, tag="t1", agent="ada", val_bpb=0.95, finished_at=NOW - 10), 0.96)
    stale_best = NewBest(Experiment(id=3, tag="t1", val_bpb=0.99, finished_at=NOW - 7200), 1.0)
    waiting = SupervisorRow(state="running", heartbeat_at=NOW,
                            waiting={"cy": {"since": NOW - 40, "prompt": "\x1b[1m❯ 1. Yes\x1b[0m"}})
    agents = [activity(recent=(crash(5), crash(4), crash(3))),
              activity(name="dan", last_started=NOW - 3 * 300 - 5),  # 3 budgets without a run
              activity(name="eve", last_started=NOW - 3 * 300 - 5, live=True),  # running: fine
              activity(name="fay", state="stopped", last_started=NOW - 99_999)]  # stopped: fine
    items = attention.collect(attention.AttentionInputs(NOW, [pending], agents, [best, stale_best],
                                                        waiting), Settings())
    assert kinds(items) == ["review", "waiting", "stuck", "crash-streak", "new-best"]
    review, wait, stuck, streak, new_best = items
    assert (review.key, review.experiment_id, review.agent) == ("review:7", 7, "bob")
    assert wait.agent == "cy" and "❯ 1. Yes" in wait.title and "\x1b" not in wait.title
    assert stuck.agent == "dan" and "no experiment for 15 min" in stuck.title
    assert (streak.key, streak.detail) == ("crash-streak:ada:5", "try 5")
    assert new_best.delta == pytest.approx(-0.01) and new_best.key == "new-best:9"
    assert attention.agent_labels(items) == {"bob": "review", "cy": "waiting"}
    again = attention.collect(attention.AttentionInputs(NOW + 1, [pending], agents, [best], waiting),
                              Settings())
    assert [i.key for i in again] == [i.key for i in items]


def test_two_crashes_are_not_a_streak_and_a_keep_breaks_one() -> None:
    keep = Experiment(id=6, agent="ada", status="finished", decision="keep")
    for recent in ((crash(2), crash(1)), (crash(4), keep, crash(2), crash(1))):
        items = attention.collect(attention.AttentionInputs(
            NOW, agents=[activity(recent=recent)], supervisor=ALIVE), Settings())
        assert items == []
    assert kinds(attention.collect(attention.AttentionInputs(
        NOW, agents=[activity(recent=(crash(2), crash(1)))], supervisor=ALIVE),
        Settings(crash_streak=2))) == ["crash-streak"]


def test_a_silent_or_stopped_supervisor_is_trouble() -> None:
    def supervisor_items(row):
        return [(i.key, i.title) for i in attention.collect(
            attention.AttentionInputs(NOW, supervisor=row), Settings())]

    assert supervisor_items(None)[0][0] == "supervisor:down"
    assert supervisor_items(SupervisorRow(state="running", heartbeat_at=NOW - 60))[0][0] == "supervisor:down"
    error = SupervisorRow(state="error", message="the ledger x was deleted\x1b[2J while in use")
    assert supervisor_items(error) == [("supervisor:error",
                                        "supervisor stopped: the ledger x was deleted while in use")]


@pytest.mark.parametrize("screen", [
    "╭────────╮\n│ > Try \"fix lint errors\" │\n╰────────╯\n  ? for shortcuts",  # Claude Code, idle
    " Do you want to proceed?\n ❯ 1. Yes\n   2. No, and tell Claude what to do differently",
    "▌ Ask Codex to do anything\n ⏎ send   ⌃J newline   ⌃T transcript   ⌃C quit",  # Codex, idle
    "Allow command?\n  $ uv run train.py\n  ▌ Yes   Always   No",  # Codex approval
])
def test_built_in_prompts(screen: str) -> None:
    assert attention.prompt_line("lots of output\n" * 50 + screen, attention.compile_prompts())


@pytest.mark.parametrize("screen", [
    "step 00042 (14.0%) | loss: 3.2",
    "✻ Thinking… (12s · esc to interrupt)\n  ? for shortcuts",  # working: not waiting
    "• Working (3s • Esc to interrupt)\n ⏎ send",
])
def test_no_prompt(screen: str) -> None:
    assert attention.prompt_line(screen, attention.compile_prompts()) is None


def test_configured_prompts() -> None:
    patterns = attention.compile_prompts([r"^READY>"])
    assert attention.prompt_line("x\nREADY> ", patterns) == "READY>"


def test_cockpit_attention_json(tmp_path: Path) -> None:
    main = make_project(tmp_path)
    with Ledger(main / ".autoresearch" / "ledger.db") as ledger:
        exp_id = ledger.register(tag="t1", agent="ada", status="finished", decision="pending",
                                 review="pending", val_bpb=0.97, finished_at=time.time())
        write_supervisor(ledger, state="running", pid=1)
    code, out, _ = cli("attention", "--json", cwd=main)
    assert code == 0
    items = json.loads(out)
    assert [(i["kind"], i["experiment_id"]) for i in items] == [("review", exp_id)]
    code, out, _ = cli("attention", cwd=main)
    assert code == 0 and f"#{exp_id} awaits review" in out


def test_an_agent_pane_showing_a_prompt_waits_for_input(tmp_path: Path) -> None:
    main = make_project(tmp_path)
    server = TmuxServer.start(main)
    try:
        with Ledger(main / ".autoresearch" / "ledger.db") as ledger:
            register_agent(ledger, main, "ada")
            script = ("printf 'Working...\\n'; sleep 0.3; "
                      "printf ' Do you want to proceed?\\n ❯ 1. Yes\\n'; exec sleep 600")
            pane_id = panes.new_window(server.session, ["sh", "-c", script], main, socket=server.socket)
            pid = panes.pane_pid(pane_id, server.socket)
            ledger.upsert_agent("ada", pane_id=pane_id, tmux_socket=server.socket, pid=pid,
                                pid_start=process_identity(pid))
            watch = PaneWatch(attention.compile_prompts(), idle_s=0.5)
            assert watch.check(ledger.agents()) == {}  # just seen: not idle yet
            waiting = wait_for(lambda: watch.check(ledger.agents()), 10, interval=0.2)
            assert waiting["ada"]["prompt"] == "Do you want to proceed?"
    finally:
        server.kill()


def test_a_dead_supervisors_pane_observations_are_not_shown(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        write_supervisor(ledger, state="running", pid=1,
                         waiting={"ada": {"since": time.time(), "prompt": "❯ 1. Yes"}})
        assert kinds(current_attention(ledger, Settings(), time.time())) == ["waiting"]
        later = time.time() + attention.HEARTBEAT_STALE_S + 1  # SIGKILLed: its row says running
        assert kinds(current_attention(ledger, Settings(), later)) == ["supervisor"]
