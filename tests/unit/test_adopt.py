"""Adopt into main through the ledger: clean, main moved (exact / merge), conflict, dirty main."""
from __future__ import annotations

from pathlib import Path

import pytest

from app.actions import ActionError
from app.adopt import adopt_check, adopt_experiment
from app.ledger.store import Ledger
from gitrepo import commit_edit, edit, git, make_repo


@pytest.fixture
def setup(tmp_path: Path):
    main = make_repo(tmp_path / "repo")
    worktree = tmp_path / "wt"
    git(main, "worktree", "add", "--quiet", "-b", "autoresearch/t-a1", str(worktree), "main")
    ledger = Ledger(main / ".autoresearch" / "ledger.db")
    yield main, worktree, ledger
    ledger.close()


def run_kept(ledger: Ledger, worktree: Path, old: str, new: str, desc: str, bpb: float) -> int:
    parent = git(worktree, "rev-parse", "HEAD")
    sha = commit_edit(worktree, "train.py", old, new, desc)
    return ledger.register(agent="a1", worktree=str(worktree), branch="autoresearch/t-a1",
                           parent_sha=parent, commit_sha=sha, description=desc, status="finished",
                           decision="keep", val_bpb=bpb)


def test_clean_adopt_lands_exactly_what_was_measured(setup) -> None:
    main, worktree, ledger = setup
    exp_id = run_kept(ledger, worktree, "DEPTH = 8", "DEPTH = 12", "deeper [red]x[/red]\nnet", 0.98)
    offer = adopt_check(ledger, exp_id)
    assert not offer.main_moved
    message = adopt_experiment(ledger, exp_id)
    assert "adopted into main" in message
    assert (main / "train.py").read_text() == (worktree / "train.py").read_text()
    subject = git(main, "log", "-1", "--format=%s")
    assert subject == f"Adopt experiment #{exp_id}: deeper [red]x[/red] net (val_bpb 0.980000)"
    exp = ledger.get(exp_id)
    assert exp.adopted_sha == git(main, "rev-parse", "HEAD") and exp.needs_rerun == 0
    adopt_event = ledger.events(exp_id, kind="adopt")[0]
    assert adopt_event.detail["mode"] == "exact" and adopt_event.actor == "human"
    with pytest.raises(ActionError, match="already adopted"):
        adopt_check(ledger, exp_id)


def test_main_moved_offers_choice_and_exact_overrides(setup) -> None:
    main, worktree, ledger = setup
    exp_id = run_kept(ledger, worktree, "LR = 0.04", "LR = 0.03", "lower lr", 0.97)
    commit_edit(main, "train.py", "DEPTH = 8", "DEPTH = 10", "another adoption")
    offer = adopt_check(ledger, exp_id)
    assert offer.main_moved and "3-way merge" in offer.describe()
    adopt_experiment(ledger, exp_id, mode="exact")
    assert (main / "train.py").read_text() == (worktree / "train.py").read_text()
    assert "DEPTH = 8" in (main / "train.py").read_text()


def test_main_moved_merge_is_marked_needs_rerun(setup) -> None:
    main, worktree, ledger = setup
    exp_id = run_kept(ledger, worktree, "LR = 0.04", "LR = 0.03", "lower lr", 0.97)
    commit_edit(main, "train.py", "DEPTH = 8", "DEPTH = 10", "another adoption")
    message = adopt_experiment(ledger, exp_id, mode="merge")
    assert "needs rerun" in message
    text = (main / "train.py").read_text()
    assert "DEPTH = 10" in text and "LR = 0.03" in text
    assert ledger.get(exp_id).needs_rerun == 1
    assert "Needs-rerun" in git(main, "log", "-1", "--format=%B")


def test_conflict_leaves_main_untouched_and_is_audited(setup) -> None:
    main, worktree, ledger = setup
    exp_id = run_kept(ledger, worktree, "DEPTH = 8", "DEPTH = 12", "deeper", 0.97)
    head = commit_edit(main, "train.py", "DEPTH = 8", "DEPTH = 6", "shallower on main")
    before = (main / "train.py").read_text()
    with pytest.raises(ActionError, match="conflict"):
        adopt_experiment(ledger, exp_id, mode="merge")
    assert git(main, "rev-parse", "HEAD") == head and (main / "train.py").read_text() == before
    assert git(main, "status", "--porcelain") == ""
    assert ledger.get(exp_id).adopted_sha == ""
    assert ledger.events(exp_id, kind="adopt-failed")[0].detail["mode"] == "merge"


def test_dirty_main_refuses(setup) -> None:
    main, worktree, ledger = setup
    exp_id = run_kept(ledger, worktree, "DEPTH = 8", "DEPTH = 12", "deeper", 0.97)
    edit(main, "prepare.py", "MAX_SEQ_LEN = 2048", "MAX_SEQ_LEN = 1024")
    head = git(main, "rev-parse", "HEAD")
    with pytest.raises(ActionError, match="uncommitted changes"):
        adopt_experiment(ledger, exp_id)
    assert git(main, "rev-parse", "HEAD") == head


def test_only_kept_experiments_with_commits(setup) -> None:
    _, worktree, ledger = setup
    discarded = ledger.register(agent="a1", worktree=str(worktree), decision="discard",
                                status="finished", commit_sha="abc")
    with pytest.raises(ActionError, match="only kept"):
        adopt_check(ledger, discarded)
    imported = ledger.register(agent="a1", decision="keep", status="finished")
    with pytest.raises(ActionError, match="no recorded commit"):
        adopt_check(ledger, imported)


def test_main_is_found_through_the_ledger_once_the_worktree_is_gone(setup) -> None:
    main, worktree, ledger = setup
    exp_id = run_kept(ledger, worktree, "DEPTH = 8", "DEPTH = 12", "deeper", 0.97)
    git(main, "worktree", "remove", "--force", str(worktree))
    assert adopt_check(ledger, exp_id).plan.main == main.resolve()
    with Ledger(main.parent / "elsewhere" / "ledger.db") as stray:  # a ledger outside any repository
        stray.register(worktree=str(worktree), commit_sha="abc", decision="keep", status="finished")
        with pytest.raises(ActionError, match="cannot find the main worktree"):
            adopt_check(stray, 1)


def test_second_kept_run_is_compared_with_main_not_its_parent_and_names_what_it_carries(setup) -> None:
    """Adopting #B whose parent is the kept #A on the same branch: main has not moved (its
    train.py is still where the branch left it), and the commit says it brings #A's change too."""
    main, worktree, ledger = setup
    first = run_kept(ledger, worktree, "DEPTH = 8", "DEPTH = 2", "shallower", 0.98)
    second = run_kept(ledger, worktree, "LR = 0.04", "LR = 0.03", "lower lr", 0.97)
    offer = adopt_check(ledger, second)
    assert not offer.main_moved
    assert [e.id for e in offer.carried] == [first]
    assert f"#{first} shallower" in offer.describe()
    adopt_experiment(ledger, second)
    text = (main / "train.py").read_text()
    assert "DEPTH = 2" in text and "LR = 0.03" in text
    body = git(main, "log", "-1", "--format=%B")
    assert f"#{first} shallower (val_bpb 0.980000)" in body


def test_main_moved_merge_uses_where_the_branch_left_main(setup) -> None:
    """A 3-way merge of #B over a moved main keeps #A's change (base: the merge-base, not #A)."""
    main, worktree, ledger = setup
    run_kept(ledger, worktree, "DEPTH = 8", "DEPTH = 2", "shallower", 0.98)
    second = run_kept(ledger, worktree, "LR = 0.04", "LR = 0.03", "lower lr", 0.97)
    commit_edit(main, "train.py", "HEADS = 4", "HEADS = 2", "another adoption")
    offer = adopt_check(ledger, second)
    assert offer.main_moved
    adopt_experiment(ledger, second, mode="merge")
    text = (main / "train.py").read_text()
    assert "DEPTH = 2" in text and "LR = 0.03" in text and "HEADS = 2" in text


def test_no_worktree_and_no_repository_says_so_without_a_question_mark(tmp_path: Path) -> None:
    with Ledger(tmp_path / "ledger.db") as ledger:
        exp_id = ledger.register(agent="a1", commit_sha="abc1234", description="x", status="finished",
                                 decision="keep", val_bpb=0.9)
        with pytest.raises(ActionError) as caught:
            adopt_check(ledger, exp_id)
    assert "?" not in str(caught.value) and "no recorded worktree" in str(caught.value)
