"""app.git against real repositories and worktrees in tmp dirs."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app import git as g
from gitrepo import commit_edit, edit, git, make_repo


@pytest.fixture(autouse=True)
def no_global_git_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ignore the developer's git config: identity comes from the repo, as in CI."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def agent(repo: Path) -> Path:
    """An agent worktree on its own branch, inside main's .autoresearch like the cockpit makes them."""
    return g.add_worktree(repo, ".autoresearch/worktrees/ada", "autoresearch/t-ada").path


def tree_state(repo: Path) -> tuple[str, str, bytes]:
    return g.head_sha(repo), git(repo, "status", "--porcelain"), (repo / "train.py").read_bytes()


# ---------------------------------------------------------------------------
# Repository facts

def test_main_worktree_found_from_anywhere(repo: Path, agent: Path) -> None:
    (agent / "sub").mkdir()
    assert g.main_worktree(repo) == repo
    assert g.main_worktree(agent) == repo
    assert g.main_worktree(agent / "sub") == repo
    assert g.main_worktree(agent / "train.py") == repo


def test_main_worktree_outside_a_repo(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(g.GitError, match="is not inside a git repository"):
        g.main_worktree(tmp_path / "plain")
    with pytest.raises(g.GitError, match="does not exist"):
        g.main_worktree(tmp_path / "missing")


def test_branch_and_head(repo: Path, agent: Path) -> None:
    assert g.current_branch(repo) == "main"
    assert g.current_branch(agent) == "autoresearch/t-ada"
    full = g.head_sha(repo)
    assert len(full) == 40 and full.startswith(g.head_sha(repo, short=True))
    git(agent, "checkout", "--quiet", "--detach")
    assert g.current_branch(agent) is None
    with pytest.raises(g.GitError, match="not a commit"):
        g.rev_parse(repo, "no-such-branch")


def test_is_dirty_tracks_modified_staged_and_paths(repo: Path) -> None:
    assert not g.is_dirty(repo)
    (repo / "notes.txt").write_text("scratch")
    assert not g.is_dirty(repo)
    assert g.is_dirty(repo, untracked=True)
    edit(repo, "program.md", "Edit", "Change")
    assert g.is_dirty(repo)
    assert not g.is_dirty(repo, paths=["train.py"])
    edit(repo, "train.py", "DEPTH = 8", "DEPTH = 10")
    assert g.is_dirty(repo, paths=["train.py"])
    git(repo, "add", "train.py")
    (repo / "train.py").write_text(g.file_at(repo, "HEAD", "train.py") or "")
    assert g.dirty_files(repo, paths=["train.py"]) == ["train.py"]  # staged, worktree reverted


def test_file_at_and_files_differ(repo: Path, agent: Path) -> None:
    assert "DEPTH = 8" in (g.file_at(repo, "HEAD", "train.py") or "")
    assert g.file_at(repo, "HEAD", "nope.py") is None
    with pytest.raises(g.GitError):
        g.file_at(repo, "deadbeef", "train.py")
    assert not g.files_differ(agent, "prepare.py", repo)
    assert not g.files_differ(agent, "prepare.py", "main")
    edit(agent, "prepare.py", "2048", "4096")
    assert g.files_differ(agent, "prepare.py", repo)
    assert g.files_differ(agent, "prepare.py", "main")
    assert g.files_differ(agent, "absent.py", "HEAD") is False


# ---------------------------------------------------------------------------
# Worktrees

def test_add_and_list_worktrees(repo: Path, agent: Path) -> None:
    assert agent == (repo / ".autoresearch/worktrees/ada").resolve()
    assert (agent / "train.py").read_text() == (repo / "train.py").read_text()
    assert g.branch_exists(repo, "autoresearch/t-ada")
    trees = g.list_worktrees(agent)
    assert [w.is_main for w in trees] == [True, False]
    assert trees[0].path == repo and trees[0].branch == "main"
    assert trees[1].branch == "autoresearch/t-ada" and trees[1].head == g.head_sha(repo)


def test_add_worktree_starts_from_given_rev_and_guards_branches(repo: Path, tmp_path: Path) -> None:
    first = g.head_sha(repo)
    commit_edit(repo, "train.py", "LR = 0.04", "LR = 0.05", "lr")
    old = g.add_worktree(repo, tmp_path / "old", "exp/old", start=first)
    assert g.head_sha(old.path) == first
    with pytest.raises(g.GitError, match="already exists"):
        g.add_worktree(repo, tmp_path / "again", "exp/old")
    g.remove_worktree(repo, old.path)
    reused = g.add_worktree(repo, tmp_path / "again", "exp/old", reuse_branch=True)
    assert g.head_sha(reused.path) == first
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(g.GitError, match="not empty"):
        g.add_worktree(repo, tmp_path / "full", "exp/full")


def test_remove_worktree_refuses_uncommitted_work(repo: Path, agent: Path) -> None:
    edit(agent, "train.py", "DEPTH = 8", "DEPTH = 9")
    with pytest.raises(g.GitError, match=r"uncommitted work \(train.py\)"):
        g.remove_worktree(repo, agent)
    assert (agent / "train.py").read_text().count("DEPTH = 9") == 1
    git(agent, "checkout", "--", "train.py")
    (agent / "idea.md").write_text("untracked notes")
    with pytest.raises(g.GitError, match="idea.md"):
        g.remove_worktree(repo, agent)
    (agent / "idea.md").unlink()
    (agent / "run.log").write_text("ignored output")
    g.remove_worktree(repo, agent)
    assert not agent.exists()
    assert g.branch_exists(repo, "autoresearch/t-ada")
    assert len(g.list_worktrees(repo)) == 1


def test_remove_worktree_force_main_and_vanished(repo: Path, agent: Path, tmp_path: Path) -> None:
    edit(agent, "train.py", "DEPTH = 8", "DEPTH = 9")
    g.remove_worktree(repo, agent, force=True)
    assert not agent.exists()
    with pytest.raises(g.GitError, match="main worktree"):
        g.remove_worktree(repo, repo)
    with pytest.raises(g.GitError, match="is not a worktree"):
        g.remove_worktree(repo, tmp_path / "elsewhere")
    gone = g.add_worktree(repo, tmp_path / "gone", "exp/gone").path
    shutil.rmtree(gone)
    assert g.list_worktrees(repo)[-1].prunable
    g.remove_worktree(repo, gone)
    assert len(g.list_worktrees(repo)) == 1


# ---------------------------------------------------------------------------
# Diffs

def test_diff_stat_and_text_against_branch_head(agent: Path) -> None:
    assert g.diff_stat(agent) == g.DiffStat(0, 0, 0, ())
    edit(agent, "train.py", "DEPTH = 8", "DEPTH = 12")
    edit(agent, "train.py", "HEADS = 4  # attention heads\n", "HEADS = 6  # attention heads\nKV_HEADS = 2\n")
    stat = g.diff_stat(agent)
    assert (stat.files_changed, stat.insertions, stat.deletions, stat.paths) == (1, 3, 2, ("train.py",))
    git(agent, "add", "train.py")
    assert g.diff_stat(agent) == stat  # staged changes still count against the head
    text = g.diff_text(agent)
    assert "-DEPTH = 8" in text and "+DEPTH = 12" in text and "\x1b" not in text
    edit(agent, "program.md", "Edit", "Change")
    assert g.diff_stat(agent, paths=("train.py", "program.md")).files_changed == 2


def test_diff_between_revisions(repo: Path) -> None:
    before = g.head_sha(repo)
    after = commit_edit(repo, "train.py", "WARMUP = 0.0", "WARMUP = 0.1", "warmup")
    text = g.diff_between(repo, before, after)
    assert "-WARMUP = 0.0" in text and "+WARMUP = 0.1" in text
    assert g.diff_between(repo, before, after, path="prepare.py") == ""


# ---------------------------------------------------------------------------
# Adopt into main

def test_adopt_clean_case(repo: Path, agent: Path) -> None:
    parent = g.head_sha(agent)
    exp = commit_edit(agent, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper")
    plan = g.adopt_check(repo, exp, parent)
    assert (plan.main_dirty, plan.main_moved, plan.identical, plan.branch) == (False, False, False, "main")
    result = g.adopt(repo, exp, parent, "adopt exp 7: val_bpb 0.981 deeper", "exact")
    assert result.previous_sha == parent and result.main_sha == g.head_sha(repo) != parent
    assert not result.needs_rerun and not result.main_moved
    assert (repo / "train.py").read_text() == g.file_at(agent, exp, "train.py")
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-list", "--count", f"{parent}..main") == "1"
    body = git(repo, "log", "-1", "--format=%B")
    assert body.startswith("adopt exp 7: val_bpb 0.981 deeper") and f"Adopted-from: {exp}" in body
    assert git(repo, "diff", "--name-only", parent, "main") == "train.py"
    assert g.adopt_check(repo, exp, parent).identical


def test_adopt_main_moved_exact_takes_experiment_verbatim(repo: Path, agent: Path) -> None:
    parent = g.head_sha(agent)
    exp = commit_edit(agent, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper")
    commit_edit(repo, "train.py", "WARMUP = 0.0", "WARMUP = 0.1", "another adoption")
    plan = g.adopt_check(repo, exp, parent)
    assert plan.main_moved and not plan.identical
    result = g.adopt(repo, exp, parent, "adopt anyway", "exact")
    assert result.main_moved and not result.needs_rerun
    assert (repo / "train.py").read_text() == g.file_at(repo, exp, "train.py")
    assert "WARMUP = 0.0" in (repo / "train.py").read_text()  # main's change is replaced


def test_adopt_main_moved_merge_combines_and_needs_rerun(repo: Path, agent: Path) -> None:
    exp = commit_edit(agent, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper")
    commit_edit(repo, "train.py", "WARMUP = 0.0", "WARMUP = 0.1", "another adoption")
    result = g.adopt(repo, exp, None, "adopt merged", "merge")  # parent from the merge-base
    text = (repo / "train.py").read_text()
    assert "DEPTH = 12" in text and "WARMUP = 0.1" in text
    assert result.needs_rerun and result.mode == "merge"
    assert "Needs-rerun:" in git(repo, "log", "-1", "--format=%B")
    assert git(repo, "status", "--porcelain") == ""


def test_adopt_merge_without_moved_main_needs_no_rerun(repo: Path, agent: Path) -> None:
    parent = g.head_sha(agent)
    exp = commit_edit(agent, "train.py", "LR = 0.04", "LR = 0.03", "lower lr")
    result = g.adopt(repo, exp, parent, "adopt", "merge")
    assert not result.needs_rerun
    assert (repo / "train.py").read_text() == g.file_at(repo, exp, "train.py")


def test_adopt_conflict_leaves_main_untouched(repo: Path, agent: Path) -> None:
    parent = g.head_sha(agent)
    exp = commit_edit(agent, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper")
    commit_edit(repo, "train.py", "DEPTH = 8", "DEPTH = 6", "shallower")
    before = tree_state(repo)
    with pytest.raises(g.MergeConflict, match="1 conflict") as info:
        g.adopt(repo, exp, parent, "adopt", "merge")
    assert info.value.conflicts == 1
    assert tree_state(repo) == before
    assert before[1] == ""


def test_adopt_dirty_main_aborts_untouched(repo: Path, agent: Path) -> None:
    parent = g.head_sha(agent)
    exp = commit_edit(agent, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper")
    edit(repo, "program.md", "Edit", "Hand-edit")
    before = tree_state(repo)
    assert g.adopt_check(repo, exp, parent).dirty_files == ("program.md",)
    for mode in g.ADOPT_MODES:
        with pytest.raises(g.MainDirty, match="program.md"):
            g.adopt(repo, exp, parent, "adopt", mode)
    assert tree_state(repo) == before
    assert "Hand-edit" in (repo / "program.md").read_text()


def test_adopt_failed_commit_rolls_back(repo: Path, agent: Path) -> None:
    parent = g.head_sha(agent)
    exp = commit_edit(agent, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper")
    hook = repo / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'error: blocked by hook' >&2\nexit 1\n")
    hook.chmod(0o755)
    before = tree_state(repo)
    with pytest.raises(g.GitError, match="blocked by hook"):
        g.adopt(repo, exp, parent, "adopt", "exact")
    assert tree_state(repo) == before


def test_adopt_refuses_nothing_to_do_and_bad_input(repo: Path, agent: Path) -> None:
    parent = g.head_sha(agent)
    exp = commit_edit(agent, "program.md", "Edit", "Change", "docs only")
    with pytest.raises(g.AdoptAborted, match="nothing to adopt"):
        g.adopt(repo, exp, parent, "adopt", "exact")
    with pytest.raises(ValueError, match="mode"):
        g.adopt(repo, exp, parent, "adopt", "rebase")
    with pytest.raises(ValueError, match="message"):
        g.adopt(repo, exp, parent, "  ", "exact")
    with pytest.raises(g.GitError, match="not a commit"):
        g.adopt(repo, "0" * 40, parent, "adopt", "exact")
    git(agent, "rm", "--quiet", "train.py")
    git(agent, "commit", "--quiet", "-m", "drop train.py")
    with pytest.raises(g.AdoptAborted, match="experiment commit .* has no committed train.py"):
        g.adopt(repo, g.head_sha(agent), parent, "adopt", "exact")
    assert git(repo, "status", "--porcelain") == "" and g.head_sha(repo) == parent


def test_adopt_onto_master_from_a_worktree_path(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "m", branch="master")
    agent = g.add_worktree(repo, tmp_path / "wt", "autoresearch/t-bo").path
    exp = commit_edit(agent, "train.py", "HEADS = 4", "HEADS = 8", "more heads")
    result = g.adopt(agent, exp, None, "adopt", "exact")  # any worktree finds main
    assert result.branch == "master"
    assert git(repo, "rev-parse", "master") == result.main_sha
    assert "HEADS = 8" in (repo / "train.py").read_text()


def test_small_repository_facts(repo: Path, agent: Path, tmp_path: Path) -> None:
    outside = tmp_path / "plain"
    outside.mkdir()
    assert g.common_dir(agent) == g.common_dir(repo) == (repo / ".git").resolve()
    assert g.toplevel(agent) == agent.resolve() and g.toplevel(repo) == repo.resolve()
    assert g.common_dir(outside) is None and g.toplevel(outside) is None
    commit_edit(agent, "train.py", "DEPTH = 8", "DEPTH = 9", "a subject line")
    assert g.commit_subject(agent) == "a subject line" and g.commit_subject(outside) == ""
    assert g.config_value(repo, "cockpit.nothing") is None
    g.run(repo, "config", "cockpit.test", "yes")
    assert g.config_value(repo, "cockpit.test") == "yes"
    with pytest.raises(g.GitError, match="git log failed"):
        g.run(outside, "log")


def test_delete_branch_says_why_not(repo: Path) -> None:
    g.run(repo, "branch", "spare")
    assert g.delete_branch(repo, "spare") == "" and not g.branch_exists(repo, "spare")
    assert "not found" in g.delete_branch(repo, "spare")
