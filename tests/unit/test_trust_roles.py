"""Trust, item 3 (roles): an agent cannot do what a human does, and every event names the real
actor. Real `cockpit` processes, real git worktrees, a real SQLite ledger."""
from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from app.ledger.store import Ledger
from app.roles import identify
from app.run.procs import process_identity
from runnerhelpers import agent_worktree, cockpit, cockpit_env, make_project


@pytest.fixture
def project(tmp_path: Path, clean_env: None) -> SimpleNamespace:
    main = make_project(tmp_path)
    a1 = agent_worktree(main, "a1", tag="t1")
    a2 = agent_worktree(main, "a2", tag="t1")
    db = main / ".autoresearch" / "ledger.db"
    with Ledger(db) as ledger:
        pending = ledger.register(agent="a1", worktree=str(a1), branch="autoresearch/t1-a1",
                                  status="finished", decision="pending", review="pending",
                                  val_bpb=0.97)
        me = process_identity(os.getpid())
        running = {name: ledger.register(agent=name, worktree=str(wt), status="running",
                                         runner_pid=os.getpid(), runner_start=me)
                   for name, wt in (("a1", a1), ("a2", a2))}
    return SimpleNamespace(main=main, a1=a1, a2=a2, db=db, pending=pending, running=running)


def as_agent(name: str = "a1") -> dict[str, str]:
    return cockpit_env(COCKPIT_AGENT=name)


def refused(proc) -> bool:
    return proc.returncode == 2 and "is for humans" in proc.stderr and len(
        proc.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_an_agent_cannot_review_its_own_run(project, verb) -> None:
    proc = cockpit(verb, str(project.pending), cwd=project.a1, env=as_agent())
    assert refused(proc), proc.stderr
    with Ledger(project.db) as db:
        exp = db.get(project.pending)
        assert (exp.decision, exp.review) == ("pending", "pending")
        assert not db.events(project.pending, kind=verb)


def test_an_agent_is_recognised_by_its_worktree_without_the_variable(project) -> None:
    proc = cockpit("approve", str(project.pending), cwd=project.a1, env=cockpit_env())
    assert refused(proc) and "worktree" in proc.stderr
    with Ledger(project.db) as db:
        assert identify(db, project.a1).agent == "a1"
        assert not identify(db, project.main).is_agent


def test_a_human_approves_from_main_and_is_recorded_as_human(project) -> None:
    proc = cockpit("approve", str(project.pending), cwd=project.main, env=cockpit_env())
    assert proc.returncode == 0, proc.stderr
    with Ledger(project.db) as db:
        assert db.get(project.pending).decision == "keep"
        assert [e.actor for e in db.events(project.pending, kind="approve")] == ["human"]


def test_an_agent_kills_only_its_own_run_and_is_recorded_as_itself(project) -> None:
    other = project.running["a2"]
    proc = cockpit("kill", str(other), cwd=project.a1, env=as_agent())
    assert refused(proc) and "a2's run" in proc.stderr
    own = project.running["a1"]
    proc = cockpit("kill", str(own), cwd=project.a1, env=as_agent())
    assert proc.returncode == 0, proc.stderr
    with Ledger(project.db) as db:
        assert db.get(other).kill_requested_at is None
        assert [e.actor for e in db.events(own, kind="kill")] == ["agent:a1"]


def test_an_agent_cannot_write_notes_as_a_human(project) -> None:
    proc = cockpit("note", "trust me", "--author", "human", cwd=project.a1, env=as_agent())
    assert proc.returncode == 2 and "cannot write a note as 'human'" in proc.stderr
    proc = cockpit("note", "a lesson", "--json", cwd=project.a1, env=as_agent())
    assert proc.returncode == 0, proc.stderr
    with Ledger(project.db) as db:
        [note] = db.notes()
        assert (note.author, note.agent) == ("a1", "a1")
        assert [e.actor for e in db.events(kind="note")] == ["a1"]


def test_an_agent_named_human_is_still_an_agent(project) -> None:
    proc = cockpit("note", "hello", "--json", cwd=project.main, env=as_agent("human"))
    assert proc.returncode == 0, proc.stderr
    with Ledger(project.db) as db:
        assert db.notes()[0].author == "agent:human"


def test_the_review_gate_cannot_be_bypassed_by_a_flag(project) -> None:
    (project.main / ".autoresearch" / "config.toml").write_text('review = "gate"\n')
    proc = cockpit("run", "-m", "skip the gate", "--review", "auto", cwd=project.a1,
                   env=as_agent())
    assert refused(proc) and "--review auto" in proc.stderr
    proc = cockpit("run", "-m", "pose as a2", "--agent", "a2", cwd=project.a1, env=as_agent())
    assert proc.returncode == 2 and "cannot run as 'a2'" in proc.stderr
    with Ledger(project.db) as db:
        assert len(db.experiments()) == 3  # nothing was registered


def test_the_tui_opens_read_only_for_an_agent(project, monkeypatch) -> None:
    from app.cli import _agent_is_asking

    assert not _agent_is_asking(project.db)
    monkeypatch.setenv("COCKPIT_AGENT", "a1")
    assert _agent_is_asking(project.db)
