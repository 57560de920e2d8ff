"""Before a run: find the worktree, refuse what must not be measured, resolve names and limits."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import git
from app.config import Settings
from app.errors import InfraError, UsageError
from app.ledger.limits import TEXT_CAP, over_cap
from app.ledger.store import Experiment, Ledger
from app.policy import PolicySettings, hard_timeout_s
from app.run.backends import BackendUnavailable, check_backend
from app.run.context import is_kept_commit, repeat_original
from app.run.lease import PoolError, PoolSpec, pool_spec
from app.run.procs import process_identity, same_process

DEFAULT_TIME_BUDGET_S = 300.0
MODAL_GPU_ENV = "AUTORESEARCH_MODAL_GPU"  # read by modal_train.py when it is loaded
CHILD_ENV_PREFIX = "AUTORESEARCH_"  # passed on to the training process, also on Modal


class RunRefused(UsageError):
    """The run cannot start as asked; the message says why and what to do (exit status 2)."""


class RunInfraError(InfraError):
    """The machinery needed for the run is unavailable (exit status 3)."""


@dataclass
class RunRequest:
    description: str
    worktree: Path = field(default_factory=Path.cwd)
    hypothesis: str = ""
    category: str = ""
    tag: str | None = None
    agent: str | None = None
    backend: str | None = None
    review: str | None = None
    repeat: bool = False
    allow_prepare_change: bool = False
    timeout_s: float | None = None


@dataclass
class Plan:
    worktree: Path
    main: Path
    settings: Settings
    policy: PolicySettings
    agent: str
    tag: str
    branch: str
    main_branch: str | None
    commit_sha: str
    parent_sha: str
    description: str
    hypothesis: str
    category: str
    backend: str
    review: str
    timeout_s: float
    env: dict[str, str]
    integrity_reasons: list[str]
    repeat_of: Experiment | None
    pool: PoolSpec | None = None  # the GPU pool (or Modal slots) this run leases from

    def register_fields(self) -> dict[str, Any]:
        return {"tag": self.tag, "agent": self.agent, "worktree": str(self.worktree),
                "branch": self.branch, "parent_sha": self.parent_sha, "commit_sha": self.commit_sha,
                "description": self.description, "hypothesis": self.hypothesis,
                "category": self.category, "backend": self.backend, "status": "registered",
                "integrity": int(bool(self.integrity_reasons)),
                "repeat_of": self.repeat_of.id if self.repeat_of else None,
                "runner_pid": os.getpid(), "runner_start": process_identity(os.getpid())}


def locate(path: Path) -> tuple[Path, Path]:
    """(the worktree containing `path`, the repository's main worktree)."""
    try:
        worktree = git.toplevel(path)
    except git.GitError as exc:  # git is not installed
        raise RunInfraError(str(exc)) from exc
    if worktree is None:
        raise RunRefused(f"{path} is not inside a git worktree: run `cockpit run` in an agent's "
                         "worktree (the commit is what is measured)")
    try:
        return worktree, git.main_worktree(worktree)
    except git.GitError as exc:
        raise RunRefused(str(exc)) from exc


def agent_name(explicit: str | None, worktree: Path) -> str:
    return explicit or os.environ.get("COCKPIT_AGENT") or worktree.name


def tag_name(explicit: str | None, ledger: Ledger, agent: str, branch: str | None,
             settings: Settings) -> str:
    """--tag, $COCKPIT_TAG, the agent's tag in the ledger, autoresearch/<tag>[-<agent>],
    the configured tag, else the branch name."""
    if explicit or os.environ.get("COCKPIT_TAG"):
        return explicit or os.environ["COCKPIT_TAG"]
    return derived_tag(ledger, agent, branch, settings.tag)


def derived_tag(ledger: Ledger, agent: str, branch: str | None, fallback: str = "") -> str:
    """The agent's tag in the ledger, autoresearch/<tag>[-<agent>], `fallback`, else the branch
    name (also for runs observed or imported from an agent's worktree)."""
    known = ledger.get_agent(agent)
    if known and known.tag:
        return known.tag
    if branch and branch.startswith("autoresearch/"):
        rest = branch.removeprefix("autoresearch/")
        return rest.removesuffix(f"-{agent}") or rest
    return fallback or branch or "untagged"


def policy_settings(settings: Settings) -> PolicySettings:
    return PolicySettings(min_delta=settings.min_delta, k_sigma=settings.k_sigma,
                          near_miss=settings.near_miss, contended_frac=settings.contended_frac,
                          crash_streak_limit=settings.crash_streak,
                          timeout_factor=settings.timeout_factor,
                          implausible_ratio=settings.implausible_ratio)


def effective_time_budget(env: dict[str, str]) -> float:
    raw = env.get("AUTORESEARCH_TIME_BUDGET")
    if raw is None:
        return DEFAULT_TIME_BUDGET_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise RunRefused(f"AUTORESEARCH_TIME_BUDGET={raw!r} is not a positive number of seconds")
    return value


def refuse_if_running_in(ledger: Ledger, worktree: Path) -> None:
    """RunRefused while an experiment with a live runner (or writer) is running in `worktree`.

    Checked when planning, and again inside the transaction that registers the run
    (Ledger.register's guard), so two `cockpit run`s started together cannot both pass."""
    for other in ledger.live():
        if other.worktree == str(worktree) and same_process(other.runner_pid, other.runner_start):
            raise RunRefused(f"#{other.id} is already running in this worktree: wait for it, "
                             f"or stop it with `cockpit kill {other.id}`")


def plan_run(request: RunRequest, ledger: Ledger, worktree: Path, main: Path,
             settings: Settings) -> Plan:
    """Check everything that can be checked before registering; RunRefused / RunInfraError."""
    settings = settings.with_overrides(backend=request.backend, review=request.review)
    if not request.description.strip():
        raise RunRefused("say what this experiment changes: cockpit run -m \"...\"")
    for what, text in (("-m/--description", request.description),
                       ("--hypothesis", request.hypothesis)):
        if over_cap(text.strip()):
            raise RunRefused(f"{what} is {len(text.strip().encode())} bytes; at most {TEXT_CAP} "
                             "are stored: say it shorter (details belong in the commit message)")
    try:
        policy = policy_settings(settings)
    except ValueError as exc:
        raise RunRefused(f"invalid [tool.cockpit] setting: {exc}") from exc
    try:
        check_backend(settings.backend)
    except BackendUnavailable as exc:
        raise RunInfraError(str(exc)) from exc
    if not (worktree / "train.py").is_file():
        raise RunRefused(f"no train.py in {worktree}")
    try:
        if git.file_at(worktree, "HEAD", "train.py") is None:
            raise RunRefused("train.py is not committed: commit it first (the commit is what is measured)")
        if git.is_dirty(worktree, ["train.py"]):
            raise RunRefused("train.py has uncommitted changes: commit them first "
                             "(the commit is what is measured)")
        branch = git.current_branch(worktree)
        if branch is None:
            raise RunRefused("HEAD is detached: check out a branch (e.g. autoresearch/<tag>) first")
        commit = git.head_sha(worktree)
        try:
            parent = git.rev_parse(worktree, "HEAD~1")
        except git.GitError:
            parent = ""
        main_branch = git.current_branch(main)
        integrity = []
        if git.files_differ(worktree, "prepare.py", git.head_sha(main)):
            if not request.allow_prepare_change:
                raise RunRefused("prepare.py differs from main's (the evaluation must stay fixed): "
                                 "restore it, or pass --allow-prepare-change to run it flagged")
            integrity.append("prepare.py differs from main's")
    except git.GitError as exc:
        raise RunRefused(str(exc)) from exc
    refuse_if_running_in(ledger, worktree)
    agent = agent_name(request.agent, worktree)
    repeat_of = repeat_original(ledger, branch, commit)
    if request.repeat and repeat_of is None:
        raise RunRefused(f"nothing to repeat: HEAD {commit[:7]} has no finished run on "
                         f"{branch}; run it once with `cockpit run` first")
    if not request.repeat and not is_kept_commit(ledger, branch, commit):
        repeat_of = None  # a kept HEAD run again is a repeat, --repeat or not
    env = {**settings.train_env,
           **{k: v for k, v in os.environ.items() if k.startswith(CHILD_ENV_PREFIX)}}
    if settings.backend == "modal":
        env.setdefault(MODAL_GPU_ENV, settings.modal_gpu)
    timeout = request.timeout_s or hard_timeout_s(effective_time_budget(env), policy)
    if not math.isfinite(timeout) or timeout <= 0:
        raise RunRefused(f"--timeout must be a positive number of seconds, not {timeout}")
    try:
        pool = pool_spec(settings, settings.backend)
    except PoolError as exc:
        raise RunRefused(str(exc)) from exc
    return Plan(worktree=worktree, main=main, settings=settings, policy=policy, agent=agent,
                tag=tag_name(request.tag, ledger, agent, branch, settings), branch=branch,
                main_branch=main_branch, commit_sha=commit, parent_sha=parent,
                description=request.description.strip(), hypothesis=request.hypothesis.strip(),
                category=request.category.strip().lower(), backend=settings.backend,
                review=settings.review, timeout_s=timeout, env=env,
                integrity_reasons=integrity, repeat_of=repeat_of, pool=pool)
