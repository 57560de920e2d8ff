"""What app/git.py returns: typed results of git commands (no git is run here)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Worktree:
    path: Path
    head: str | None  # None for a bare entry
    branch: str | None  # short branch name; None when detached
    is_main: bool
    prunable: bool  # registered, but its directory is gone
    locked: bool


@dataclass(frozen=True)
class DiffStat:
    files_changed: int
    insertions: int
    deletions: int
    paths: tuple[str, ...]


@dataclass(frozen=True)
class AdoptPlan:
    main: Path
    branch: str
    main_head: str
    exp_commit: str
    parent_commit: str
    dirty_files: tuple[str, ...]  # tracked files with uncommitted changes in main
    main_moved: bool  # main's train.py differs from the base's (the merge-base, unless given)
    identical: bool  # main's train.py already equals the experiment's

    @property
    def main_dirty(self) -> bool:
        return bool(self.dirty_files)


@dataclass(frozen=True)
class AdoptResult:
    main_sha: str  # main's new head
    previous_sha: str
    branch: str
    mode: str
    exp_commit: str
    main_moved: bool
    needs_rerun: bool  # the committed train.py is a merge nobody has measured
