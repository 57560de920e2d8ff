"""Trust, item 2: the git action comes from the branch's real state. An obedient agent is never
told to reset away a kept commit or main's commit (re-runs, crashes of a kept HEAD, killed
baselines); a kept HEAD run again is a repeat.

Real git worktrees, real SQLite, `cockpit run` and `cockpit kill` with the stand-in train.py.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.ledger.store import Ledger
from app.policy import RESET_COMMAND
from app.policy.safeguards import HeadState, git_action
from gitrepo import git
from runnerhelpers import cli, cockpit_env, set_constant, start_cockpit
from waiting import wait_for


def run_json(wt: Path, message: str = "try", *args: str) -> dict:
    code, out, err = cli("run", "-m", message, "--json", *args, cwd=wt)
    assert code == 0, err
    return json.loads(out)


A, B = "a" * 40, "b" * 40


@pytest.mark.parametrize("decision, state, expected", [
    ("discard", HeadState(A, A), RESET_COMMAND),
    ("crash", HeadState(A, A, kept=True), "kept commit"),
    ("killed", HeadState(A, A, on_main=True), "main's commit"),
    ("timeout", HeadState(A, A, has_parent=False), "first commit"),
    ("discard", HeadState(A, B), "HEAD moved"),
    ("keep", HeadState(A, B), "nothing to do: the commit stays"),
    ("discard", None, RESET_COMMAND),
])
def test_git_action_table(decision, state, expected) -> None:
    action = git_action(decision, state)
    assert expected in action
    if expected != RESET_COMMAND:
        assert "reset" not in action


def test_a_kept_head_run_again_is_a_repeat_and_never_reset(project) -> None:
    first = run_json(project.wt, "baseline")
    assert first["decision"] == "keep"
    again = run_json(project.wt, "same commit again, no --repeat")
    assert again["decision"] == "repeat" and again["repeat_of"] == first["id"]
    assert "repeat of #1" in again["reason"] and "reset" not in again["git_action"]
    code, out, err = cli("run", "-m", "and as text", cwd=project.wt)
    assert code == 0 and "REPEAT" in out and "git reset" not in out


def test_a_crash_of_a_kept_head_says_nothing_to_do(project, monkeypatch) -> None:
    set_constant(project.wt, "VAL_BPB", 0.985)
    kept = run_json(project.wt, "baseline on a commit of its own")
    assert kept["decision"] == "keep"
    head = git(project.wt, "rev-parse", "HEAD")
    monkeypatch.setenv("STANDIN_VAL_BPB", "nan")  # a transient failure of the same commit
    crashed = run_json(project.wt, "re-run that crashes")
    assert crashed["decision"] == "crash"
    assert "reset" not in crashed["git_action"]
    assert git(project.wt, "rev-parse", "HEAD") == head


def test_a_killed_baseline_on_mains_commit_says_nothing_to_do(project) -> None:
    assert git(project.wt, "rev-parse", "HEAD") == git(project.main, "rev-parse", "HEAD")
    env = cockpit_env(STANDIN_STEPS="200", STANDIN_STEP_SECONDS="0.2")
    proc = start_cockpit("run", "-m", "baseline", "--json", cwd=project.wt, env=env)

    def running() -> int | None:
        if not project.db.exists():
            return None
        with Ledger(project.db) as db:
            live = [e.id for e in db.live() if e.status == "running"]
        return live[0] if live else None
    exp_id = wait_for(running, timeout=60)
    code, _, err = cli("kill", str(exp_id), cwd=project.main)
    assert code == 0, err
    out, _ = proc.communicate(timeout=60)
    result = json.loads(out)
    assert result["decision"] == "killed"
    assert "main's commit" in result["git_action"] and "reset" not in result["git_action"]


def test_a_discarded_new_commit_is_still_reset(project) -> None:
    run_json(project.wt, "baseline")
    set_constant(project.wt, "VAL_BPB", 0.995)
    worse = run_json(project.wt, "worse")
    assert worse["decision"] == "discard" and worse["git_action"] == RESET_COMMAND
