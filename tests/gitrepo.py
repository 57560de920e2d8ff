"""Test helper: a small real git repository shaped like autoresearch (train.py, prepare.py, program.md).

Usage:
    from gitrepo import make_repo, commit_edit
    repo = make_repo(tmp_path / "repo")
    sha = commit_edit(repo, "train.py", "DEPTH = 8", "DEPTH = 12", "deeper")

The repository carries its own identity in .git/config, so commits work where git has none.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

IDENTITY = {"user.name": "Cockpit Test", "user.email": "cockpit-test@example.invalid"}  # repo-local

TRAIN_PY = '''"""Stand-in for autoresearch's train.py: constants far apart so edits merge cleanly."""
import time

# ---------------------------------------------------------------------------
# Model

DEPTH = 8  # number of transformer layers
WIDTH = 512  # model width
HEADS = 4  # attention heads


def build_model():
    return {"depth": DEPTH, "width": WIDTH, "heads": HEADS}


# ---------------------------------------------------------------------------
# Optimizer

LR = 0.04  # matrix learning rate
WARMUP = 0.0  # fraction of the budget spent warming up
WEIGHT_DECAY = 0.0  # decoupled weight decay


def schedule(progress):
    return LR * min(1.0, progress / WARMUP) if WARMUP else LR


# ---------------------------------------------------------------------------
# Training

TIME_BUDGET = 300  # seconds of training


if __name__ == "__main__":
    start = time.time()
    print("---")
    print(f"val_bpb: {0.99:.6f}")
    print(f"training_seconds: {time.time() - start:.1f}")
'''

PREPARE_PY = '''"""Stand-in for autoresearch's prepare.py: fixed constants the agent must not touch."""
MAX_SEQ_LEN = 2048  # context length
EVAL_TOKENS = 40 * 524288  # tokens used for validation
'''

PROGRAM_MD = """# autoresearch

Edit train.py, run it, keep what lowers val_bpb. Do not edit prepare.py.
"""

GITIGNORE = ".autoresearch/\nrun.log\nresults.tsv\n__pycache__/\n"

FILES = {"train.py": TRAIN_PY, "prepare.py": PREPARE_PY, "program.md": PROGRAM_MD, ".gitignore": GITIGNORE}


def git(cwd: Path | str, *args: str) -> str:
    """Run git in `cwd` and return its stdout stripped; raise with stderr on failure."""
    proc = subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def make_repo(path: Path, branch: str = "main") -> Path:
    """Create a repository at `path` with one commit holding the autoresearch files; return its path."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "--quiet", "-b", branch)
    for key, value in {**IDENTITY, "commit.gpgsign": "false"}.items():
        git(path, "config", key, value)
    for name, text in FILES.items():
        (path / name).write_text(text)
    git(path, "add", *FILES)
    git(path, "commit", "--quiet", "-m", "baseline")
    return path.resolve()


def commit_file(worktree: Path, relpath: str, text: str, message: str) -> str:
    """Write `relpath`, commit it, and return the new commit's sha."""
    (worktree / relpath).write_text(text)
    git(worktree, "add", relpath)
    git(worktree, "commit", "--quiet", "-m", message)
    return git(worktree, "rev-parse", "HEAD")


def commit_edit(worktree: Path, relpath: str, old: str, new: str, message: str) -> str:
    """Replace `old` (exactly once) by `new` in `relpath`, commit, and return the new sha."""
    text = (worktree / relpath).read_text()
    if text.count(old) != 1:
        raise ValueError(f"{old!r} occurs {text.count(old)} times in {relpath}, expected once")
    return commit_file(worktree, relpath, text.replace(old, new), message)


def edit(worktree: Path, relpath: str, old: str, new: str) -> None:
    """Replace `old` by `new` in `relpath` without committing."""
    path = worktree / relpath
    path.write_text(path.read_text().replace(old, new, 1))
