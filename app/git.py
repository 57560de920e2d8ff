"""Git for the cockpit: every git command it runs (worktrees, branches, diffs, adopt-into-main).

Every function shells out to the `git` CLI (never a library) and raises GitError with a one-line
message. Adoption follows DESIGN.md "Protocols": main's train.py becomes exactly the experiment's,
or a 3-way merge marked "needs rerun"; a conflict or a dirty main aborts with main untouched.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from app.errors import UsageError
from app.git_records import AdoptPlan as AdoptPlan
from app.git_records import AdoptResult as AdoptResult
from app.git_records import DiffStat as DiffStat
from app.git_records import Worktree as Worktree

TRAIN_PY = "train.py"  # the one file an adoption carries into main
ADOPT_MODES = ("exact", "merge")  # what adopt() can do


class GitError(UsageError):
    """A git command failed, or a repository is not in the state an operation needs."""


class AdoptAborted(GitError):
    """An adoption stopped before changing main."""


class MainDirty(AdoptAborted):
    """Main's worktree has uncommitted changes to tracked files."""


class MergeConflict(AdoptAborted):
    """The 3-way merge of train.py conflicted."""

    def __init__(self, message: str, conflicts: int) -> None:
        super().__init__(message)
        self.conflicts = conflicts


# ---------------------------------------------------------------------------
# Running git

def _run(cwd: Path | str, *args: str, env: Mapping[str, str] | None = None,
         ) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, check=False,
                              env={**os.environ, **env} if env else None)
    except FileNotFoundError as exc:
        raise GitError("git is not installed (no `git` on PATH)") from exc


def run(cwd: Path | str, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Any git command (`env` added to ours): stdout without its trailing newline; GitError with
    git's explaining line on failure."""
    proc = _run(cwd, *args, env=env)
    if proc.returncode != 0:
        command = next((a for a in args if not a.startswith("-") and "=" not in a), "")
        raise GitError(f"git {command} failed in {cwd}: {_error_line(proc.stderr)}")
    return proc.stdout.decode("utf-8", "replace").rstrip("\n")


def _error_line(stderr: bytes) -> str:
    """git's first `fatal:`/`error:` line, else its first line: the one that explains."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    return (errors or lines or ["(no message)"])[0]


# ---------------------------------------------------------------------------
# Repository facts

def main_worktree(path: Path | str) -> Path:
    """The main worktree of the repository that `path` (any worktree, any subfolder) belongs to."""
    start = Path(path).expanduser()
    start = start.parent if start.is_file() else start
    if not start.is_dir():
        raise GitError(f"{path} does not exist, so it is not inside a git repository")
    common = common_dir(start)
    if common is None:
        raise GitError(f"{path} is not inside a git repository")
    if common.name == ".git":
        return common.parent
    first = _parse_worktrees(run(start, "worktree", "list", "--porcelain"))[0]
    if first.head is None:
        raise GitError(f"{path} belongs to a bare repository, which has no main worktree")
    return first.path


def _answer(path: Path | str, *args: str) -> str:
    """git's stdout, stripped; "" when it fails."""
    proc = _run(path, *args)
    return proc.stdout.decode("utf-8", "replace").strip() if proc.returncode == 0 else ""


def common_dir(path: Path | str) -> Path | None:
    """The repository's shared git folder (absolute), or None outside a repository."""
    found = _answer(path, "rev-parse", "--path-format=absolute", "--git-common-dir")
    return Path(found).resolve() if found else None


def toplevel(path: Path | str) -> Path | None:
    """The root of the worktree that contains `path`, or None outside one."""
    found = _answer(path, "rev-parse", "--show-toplevel")
    return Path(found).resolve() if found else None


def commit_subject(path: Path | str) -> str:
    """HEAD's commit subject, "" when there is no commit."""
    return _answer(path, "log", "-1", "--format=%s")


def config_value(repo: Path | str, key: str) -> str | None:
    """A git config value as git resolves it (repository, then global); None when unset."""
    return _answer(repo, "config", key) or None


def current_branch(path: Path | str) -> str | None:
    """The checked-out branch's short name, or None on a detached HEAD."""
    proc = _run(path, "symbolic-ref", "--quiet", "--short", "HEAD")
    if proc.returncode == 1:
        return None
    if proc.returncode != 0:
        raise GitError(f"git symbolic-ref failed in {path}: {_error_line(proc.stderr)}")
    return proc.stdout.decode().strip()


def rev_parse(path: Path | str, rev: str, short: bool = False) -> str:
    """The commit sha `rev` names; GitError when it names no commit."""
    short_flag = ["--short"] if short else []
    proc = _run(path, "rev-parse", "--verify", "--quiet", *short_flag, f"{rev}^{{commit}}")
    if proc.returncode != 0:
        raise GitError(f"{rev!r} is not a commit in {path}")
    return proc.stdout.decode().strip()


def head_sha(path: Path | str, short: bool = False) -> str:
    return rev_parse(path, "HEAD", short=short)


def dirty_files(path: Path | str, paths: Sequence[str] | None = None, untracked: bool = False) -> list[str]:
    """Files with uncommitted changes (staged or not); untracked files only when asked."""
    args = ["status", "--porcelain=v1", "-z", f"--untracked-files={'all' if untracked else 'no'}"]
    entries = run(path, *args, "--", *(paths or [])).split("\0")
    files, skip_next = [], False
    for entry in entries:
        if skip_next or not entry:
            skip_next = False
            continue
        skip_next = entry[0] in "RC"  # a rename's source path follows as its own entry
        files.append(entry[3:])
    return files


def is_dirty(path: Path | str, paths: Sequence[str] | None = None, untracked: bool = False) -> bool:
    """Whether tracked files (optionally only `paths`) are modified or staged in this worktree."""
    return bool(dirty_files(path, paths, untracked))


def _blob(repo: Path | str, rev: str, relpath: str) -> bytes | None:
    sha = rev_parse(repo, rev)
    proc = _run(repo, "cat-file", "blob", f"{sha}:{relpath}")
    return proc.stdout if proc.returncode == 0 else None


def file_at(path: Path | str, rev: str, relpath: str) -> str | None:
    """`relpath` (from the repository root) as of `rev`, or None when it does not exist there."""
    data = _blob(path, rev, relpath)
    return None if data is None else data.decode("utf-8", "replace")


def files_differ(worktree: Path | str, relpath: str, other: Path | str) -> bool:
    """Whether `relpath` on disk in `worktree` differs from `other`: a worktree when it is a Path
    or an absolute path, else a revision."""
    mine = Path(worktree) / relpath
    own = mine.read_bytes() if mine.is_file() else None
    if isinstance(other, Path) or Path(other).is_absolute():
        if not Path(other).is_dir():
            raise GitError(f"worktree {other} does not exist")
        theirs_path = Path(other) / relpath
        theirs = theirs_path.read_bytes() if theirs_path.is_file() else None
    else:
        theirs = _blob(worktree, other, relpath)
    return own != theirs


def branch_exists(repo: Path | str, branch: str) -> bool:
    return _run(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{branch}").returncode == 0


def commits_between(repo: Path | str, base: str, tip: str) -> list[str]:
    """The commits reachable from `tip` but not from `base`, newest first."""
    return _answer(repo, "rev-list", f"{base}..{tip}").split()


def delete_branch(repo: Path | str, branch: str) -> str:
    """`git branch -D`: git's complaint, or "" when the branch is gone."""
    proc = _run(repo, "branch", "-D", branch)
    return "" if proc.returncode == 0 else _error_line(proc.stderr)


def merge_base(repo: Path | str, rev_a: str, rev_b: str) -> str:
    proc = _run(repo, "merge-base", rev_a, rev_b)
    if proc.returncode != 0:
        raise GitError(f"{rev_a} and {rev_b} share no history in {repo}")
    return proc.stdout.decode().strip()


def is_ancestor(repo: Path | str, ancestor: str, descendant: str) -> bool:
    """True if `ancestor` is `descendant` or in its history (False when either is unknown)."""
    return _run(repo, "merge-base", "--is-ancestor", ancestor, descendant).returncode == 0


# ---------------------------------------------------------------------------
# Worktrees

def _parse_worktrees(porcelain: str) -> list[Worktree]:
    worktrees = []
    for i, block in enumerate(b for b in porcelain.split("\n\n") if b.strip()):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            fields[key] = value
        branch = fields.get("branch")
        worktrees.append(Worktree(
            path=Path(fields["worktree"]), head=None if "bare" in fields else fields.get("HEAD"),
            branch=branch.removeprefix("refs/heads/") if branch else None, is_main=i == 0,
            prunable="prunable" in fields, locked="locked" in fields))
    return worktrees


def list_worktrees(main: Path | str) -> list[Worktree]:
    """All worktrees of the repository, the main one first."""
    return _parse_worktrees(run(main, "worktree", "list", "--porcelain"))


def add_worktree(main: Path | str, path: Path | str, branch: str, start: str | None = None,
                 reuse_branch: bool = False) -> Worktree:
    """A worktree at `path` (relative: under main) on a new `branch` from `start` (default: main's
    HEAD); an existing branch is an error unless `reuse_branch`, which checks it out as it is."""
    main = main_worktree(main)
    target = Path(path) if Path(path).is_absolute() else main / path
    if target.exists() and any(target.iterdir()):
        raise GitError(f"cannot add a worktree at {target}: the folder exists and is not empty")
    if branch_exists(main, branch):
        if not reuse_branch:
            raise GitError(f"branch {branch!r} already exists; pick another name or reuse it")
        run(main, "worktree", "add", "--quiet", str(target), branch)
    else:
        start_sha = rev_parse(main, start or "HEAD")
        run(main, "worktree", "add", "--quiet", "-b", branch, str(target), start_sha)
    return next(w for w in list_worktrees(main) if w.path.resolve() == target.resolve())


def remove_worktree(main: Path | str, path: Path | str, force: bool = False) -> None:
    """Remove a worktree (its branch stays); refuse while it holds uncommitted or untracked work."""
    main = main_worktree(main)
    target = Path(path) if Path(path).is_absolute() else main / path
    match = [w for w in list_worktrees(main) if w.path.resolve() == target.resolve()]
    if not match:
        raise GitError(f"{target} is not a worktree of {main}")
    if match[0].is_main:
        raise GitError(f"{target} is the main worktree; it cannot be removed")
    if match[0].prunable or not target.is_dir():
        run(main, "worktree", "prune")
        return
    if not force:
        pending = dirty_files(target, untracked=True)
        if pending:
            shown = ", ".join(pending[:5]) + (f" and {len(pending) - 5} more" if len(pending) > 5 else "")
            raise GitError(f"worktree {target} has uncommitted work ({shown}); commit it or force removal")
    run(main, "worktree", "remove", *(["--force", "--force"] if force else []), str(target))


# ---------------------------------------------------------------------------
# Diffs

def diff_stat(worktree: Path | str, base: str = "HEAD", paths: Sequence[str] = (TRAIN_PY,)) -> DiffStat:
    """What the working tree (staged or not) changes against `base` in `paths`."""
    out = run(worktree, "diff", "--numstat", base, "--", *paths)
    insertions = deletions = 0
    changed = []  # "-" counts below are binary files
    for line in out.splitlines():
        added, removed, name = line.split("\t", 2)
        insertions += int(added) if added.isdigit() else 0
        deletions += int(removed) if removed.isdigit() else 0
        changed.append(name)
    return DiffStat(len(changed), insertions, deletions, tuple(changed))


def diff_text(worktree: Path | str, base: str = "HEAD", paths: Sequence[str] = (TRAIN_PY,),
              context: int = 3) -> str:
    """Unified diff of the working tree against `base`, no colour."""
    return run(worktree, "diff", "--no-color", "--no-ext-diff", f"-U{context}", base, "--", *paths)


def diff_between(repo: Path | str, rev_a: str, rev_b: str, path: str = TRAIN_PY, context: int = 3) -> str:
    """Unified diff of `path` between two revisions, no colour."""
    return run(repo, "diff", "--no-color", "--no-ext-diff", f"-U{context}", rev_a, rev_b, "--", path)


# ---------------------------------------------------------------------------
# Adopt into main

def adopt_check(main: Path | str, exp_commit: str, parent_commit: str | None) -> AdoptPlan:
    """What adopting `exp_commit` into main would meet; `parent_commit` None means the merge-base."""
    main = main_worktree(main)
    branch = current_branch(main)
    if branch is None:
        raise GitError(f"main worktree {main} has a detached HEAD; check out its branch first")
    main_head = head_sha(main)
    exp = rev_parse(main, exp_commit)
    parent = rev_parse(main, parent_commit) if parent_commit else merge_base(main, main_head, exp)
    main_text = _blob(main, main_head, TRAIN_PY)
    return AdoptPlan(
        main=main, branch=branch, main_head=main_head, exp_commit=exp, parent_commit=parent,
        dirty_files=tuple(dirty_files(main)),
        main_moved=main_text != _blob(main, parent, TRAIN_PY),
        identical=main_text == _blob(main, exp, TRAIN_PY),
    )


def adopt(main: Path | str, exp_commit: str, parent_commit: str | None, message: str,
          mode: str = "exact") -> AdoptResult:
    """Commit the experiment's train.py onto main's branch ("exact") or a 3-way merge of it ("merge")."""
    if mode not in ADOPT_MODES:
        raise ValueError(f"adopt mode must be one of {ADOPT_MODES}, not {mode!r}")
    if not message.strip():
        raise ValueError("an adoption needs a commit message")
    plan = adopt_check(main, exp_commit, parent_commit)
    if plan.main_dirty:
        raise MainDirty(f"main worktree {plan.main} has uncommitted changes "
                        f"({', '.join(plan.dirty_files)}); main untouched")
    exp_bytes, main_bytes = (_blob(plan.main, sha, TRAIN_PY) for sha in (plan.exp_commit, plan.main_head))
    if exp_bytes is None or main_bytes is None:
        where = f"experiment commit {plan.exp_commit[:7]}" if exp_bytes is None else f"main ({plan.branch})"
        raise AdoptAborted(f"{where} has no committed {TRAIN_PY}; main untouched")
    new_bytes = exp_bytes if mode == "exact" else _merge_train_py(plan, main_bytes, exp_bytes)
    if new_bytes == main_bytes:
        raise AdoptAborted(f"main's {TRAIN_PY} already has experiment {plan.exp_commit[:7]}'s "
                           "changes; nothing to adopt")
    needs_rerun = new_bytes != exp_bytes
    trailers = [f"Adopted-from: {plan.exp_commit}"]
    if needs_rerun:
        trailers.append(f"Needs-rerun: 3-way merge of main {plan.main_head[:7]} and experiment "
                        f"{plan.exp_commit[:7]} (base {plan.parent_commit[:7]})")
    _commit_train_py(plan.main, new_bytes, main_bytes, message.rstrip() + "\n\n" + "\n".join(trailers))
    return AdoptResult(
        main_sha=head_sha(plan.main), previous_sha=plan.main_head, branch=plan.branch, mode=mode,
        exp_commit=plan.exp_commit, main_moved=plan.main_moved, needs_rerun=needs_rerun,
    )


def _merge_train_py(plan: AdoptPlan, main_bytes: bytes, exp_bytes: bytes) -> bytes:
    """`git merge-file` of main's, the parent's and the experiment's train.py; MergeConflict on conflict."""
    base_bytes = _blob(plan.main, plan.parent_commit, TRAIN_PY) or b""
    with tempfile.TemporaryDirectory(prefix="cockpit-merge-") as tmp:
        files = []
        for name, data in (("main", main_bytes), ("parent", base_bytes), ("experiment", exp_bytes)):
            (Path(tmp) / name).write_bytes(data)
            files.append(str(Path(tmp) / name))
        proc = _run(plan.main, "merge-file", "-p", "-L", "main", "-L", "parent", "-L", "experiment", *files)
    if proc.returncode == 0:
        return proc.stdout
    if 0 < proc.returncode < 128:
        raise MergeConflict(f"3-way merge of {TRAIN_PY} (main {plan.main_head[:7]}, experiment "
                            f"{plan.exp_commit[:7]}) has {proc.returncode} conflict(s); main untouched",
                            proc.returncode)
    raise GitError(f"git merge-file failed: {_error_line(proc.stderr)}")


def _commit_train_py(main: Path, new_bytes: bytes, old_bytes: bytes, message: str) -> None:
    """Write and commit train.py alone; on failure put file and index back as they were."""
    target = main / TRAIN_PY
    target.write_bytes(new_bytes)
    proc = _run(main, "commit", "--quiet", "-m", message, "--", TRAIN_PY)
    if proc.returncode != 0:
        target.write_bytes(old_bytes)
        _run(main, "reset", "--quiet", "--", TRAIN_PY)
        raise GitError(f"git commit on main failed: {_error_line(proc.stderr)}; main untouched")
