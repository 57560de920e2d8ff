"""`cockpit demo`: a self-driving autoresearch sandbox, real training on the CPU, no GPU or LLM.

A demo directory D (default ~/.cache/autoresearch-cockpit/demo) is a git repository:
    D/prepare.py, train.py (smoke-scale constants), program.md, pyproject.toml, README.md
    D/.autoresearch/             gitignored: ledger.db, logs/, worktrees/<agent>/, demo.json
    D/.autoresearch/cache/       AUTORESEARCH_CACHE: corpus.jsonl, data/ shards, tokenizer/
    D/.autoresearch/pycache/     compiled modules, only where Python is told not to write them

`[tool.cockpit.train_env]` in D/pyproject.toml makes every train.py run there smoke-scale,
including a human's `cockpit run`. Running `cockpit demo` again reuses D: its history stays,
the previous agents are removed (their branches stay) and new ones start under a new tag.
`stop_demo(D)` stops every agent, run and training process of the demo, and its tmux server.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, fields
from pathlib import Path

import psutil

from app import git
from app.actions import reap_lost
from app.agents import lifecycle as agents
from app.agents import panes
from app.agents.kickoff import agent_env, kickoff_text, plain_shell, write_kickoff
from app.agents.mutations import apply_changes
from app.corefiles import core_file
from app.demo import corpus
from app.demo.processes import StopReport, agent_tree, alive, sandbox_processes, signal_all, stop_agent
from app.errors import CockpitError, UsageError
from app.ledger.store import Agent, Ledger
from app.run.procs import process_identity, term_then_kill

STATE_FILE = Path(".autoresearch") / "demo.json"
CACHE_DIR = Path(".autoresearch") / "cache"
AGENT_LOGS = Path(".autoresearch") / "demo-logs"  # background agents' output
TMUX_SESSION = "cockpit-demo"
AGENT_NAMES = ("ada", "bo", "cy", "di", "ed", "flo", "gus", "hal")
DEFAULT_BUDGET_S = 15
# Smoke scale: a 0.6M-parameter model that learns in seconds; runs share the cores, one thread each.
SMOKE_ENV = {"AUTORESEARCH_VOCAB_SIZE": "512", "AUTORESEARCH_MAX_SEQ_LEN": "256",
             "AUTORESEARCH_EVAL_TOKENS": "32768", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SMOKE_CONSTANTS = {"DEPTH": 2, "ASPECT_RATIO": 64, "HEAD_DIM": 64, "TOTAL_BATCH_SIZE": 8 * 256,
                   "DEVICE_BATCH_SIZE": 8}
CORPUS_CHARS, NUM_SHARDS = 2_000_000, 4
IDENTITY = {"GIT_AUTHOR_NAME": "cockpit demo", "GIT_AUTHOR_EMAIL": "demo@cockpit.invalid",
            "GIT_COMMITTER_NAME": "cockpit demo", "GIT_COMMITTER_EMAIL": "demo@cockpit.invalid"}
README = """\
# autoresearch cockpit demo sandbox

Made by `cockpit demo`: autoresearch at smoke scale (see pyproject.toml) on the docstrings of
Python's standard library. Search agents work in `.autoresearch/worktrees/<name>`.
`cockpit` opens the cockpit here; `cockpit demo --stop --dir {root}` stops the agents.
"""

Say = Callable[[str], None]


class DemoError(UsageError):
    """The demo cannot start as asked; the message says why and what to do."""


@dataclass
class Sandbox:
    root: Path
    reused: bool = False

    @property
    def ledger_path(self) -> Path:
        return self.root / ".autoresearch" / "ledger.db"


@dataclass
class DemoSession:
    tag: str
    agents: list[str]
    mode: str  # tmux | background
    tmux_socket: str = ""  # the private tmux server this session created ("" for none)
    started_at: float = field(default_factory=time.time)
    processes: list[subprocess.Popen] = field(default_factory=list)  # background agents

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "processes"}


def default_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "autoresearch-cockpit" / "demo"


def is_demo(root: Path) -> bool:
    return (root / STATE_FILE).is_file()


def read_state(root: Path) -> dict:
    """demo.json: the sessions that ran, with their tags, agents and tmux servers."""
    try:
        return json.loads((root / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {"sessions": []}


def write_state(root: Path, state: dict) -> None:
    tmp = root / STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, root / STATE_FILE)


# ---------------------------------------------------------------------------
# The sandbox repository and its data

def bytecode_env(root: Path) -> dict[str, str]:
    """Where Python may not write bytecode (PYTHONDONTWRITEBYTECODE), every run would compile
    torch from source again (~30 s): the demo's processes cache it inside the sandbox."""
    if not sys.flags.dont_write_bytecode:
        return {}
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(root / ".autoresearch/pycache")}


def pyproject_text(root: Path, budget: int) -> str:
    env = {"AUTORESEARCH_CACHE": str(root / CACHE_DIR), "AUTORESEARCH_TIME_BUDGET": str(budget),
           **SMOKE_ENV, **bytecode_env(root)}
    return "\n".join(["# The autoresearch cockpit demo sandbox, made by `cockpit demo`.", "",
                      "[tool.cockpit]", "", "# Smoke scale for every train.py run in this "
                      "repository (AUTORESEARCH_* in the environment win).",
                      "[tool.cockpit.train_env]", *(f"{k} = {json.dumps(v)}" for k, v in env.items())]) + "\n"


def _git(root: Path, *args: str) -> str:
    try:
        return git.run(root, *args, env=IDENTITY)
    except git.GitError as exc:
        raise DemoError(str(exc)) from exc


def build_sandbox(root: Path, budget: int | None, say: Say) -> Sandbox:
    """A new sandbox repository at `root`, or the existing demo there; refuses anything else."""
    root = root.expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise DemoError(f"{root} is a file, not a folder for the demo")
    if is_demo(root):
        if budget is not None:
            _set_budget(root, budget, say)
        say(f"reusing the demo sandbox {root} (its history stays; --dir elsewhere for a fresh one)")
        return Sandbox(root, reused=True)
    if root.exists() and any(root.iterdir()):
        raise DemoError(f"{root} exists and is not a demo sandbox: pick an empty or new folder "
                        "with --dir (nothing was changed)")
    say(f"creating the demo sandbox {root}")
    (root / ".autoresearch").mkdir(parents=True, exist_ok=True)
    for name in ("prepare.py", "program.md"):
        (root / name).write_bytes(core_file(name).read_bytes())
    (root / "train.py").write_text(apply_changes(core_file("train.py").read_text(), SMOKE_CONSTANTS))
    (root / "pyproject.toml").write_text(pyproject_text(root, budget or DEFAULT_BUDGET_S))
    (root / "README.md").write_text(README.format(root=root))
    (root / ".gitignore").write_text(".autoresearch/\nrun.log\nresults.tsv\n__pycache__/\n")
    _git(root, "init", "--quiet", "--initial-branch=main")
    if git.config_value(root, "user.email") is None:  # adopting into main commits as someone
        _git(root, "config", "user.name", IDENTITY["GIT_AUTHOR_NAME"])
        _git(root, "config", "user.email", IDENTITY["GIT_AUTHOR_EMAIL"])
    _git(root, "add", "prepare.py", "train.py", "program.md", "pyproject.toml", "README.md", ".gitignore")
    _git(root, "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-m",
         "demo baseline: upstream train.py at smoke scale")
    write_state(root, {"version": 1, "created_at": time.time(), "sessions": []})
    return Sandbox(root)


def _set_budget(root: Path, budget: int, say: Say) -> None:
    text = (root / "pyproject.toml").read_text()
    new = re.sub(r'^AUTORESEARCH_TIME_BUDGET = .*$', f'AUTORESEARCH_TIME_BUDGET = "{budget}"', text,
                 flags=re.M)
    if new != text:
        (root / "pyproject.toml").write_text(new)
        _git(root, "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify", "-m",
             f"demo: time budget {budget} s", "--", "pyproject.toml")
        say(f"time budget set to {budget} s")


def prepare_data(sandbox: Sandbox, say: Say) -> None:
    """The stdlib-docstring corpus, then `prepare.py --source` on it (once per sandbox)."""
    from app.config import load_settings

    env = {**os.environ, **load_settings(sandbox.root).train_env, "PYTHONUNBUFFERED": "1"}
    env.update({k: v for k, v in os.environ.items() if k.startswith("AUTORESEARCH_")})
    try:
        corpus.prepare_shards(sandbox.root, env, say, NUM_SHARDS, CORPUS_CHARS,
                              warm_up=bool(bytecode_env(sandbox.root)))
    except corpus.CorpusError as exc:
        raise DemoError(str(exc)) from exc


# ---------------------------------------------------------------------------
# Agents

def agent_seed(seed: int, name: str) -> int:
    """Each agent its own reproducible random stream."""
    return zlib.crc32(f"{seed}:{name}".encode())


def _free_names(ledger: Ledger, count: int, say: Say) -> list[str]:
    """The first `count` demo names, removing earlier agents that hold them where possible."""
    names: list[str] = []
    for name in (*AGENT_NAMES, *(f"agent{i}" for i in range(1, 100))):
        if len(names) == count:
            break
        old = ledger.get_agent(name)
        if old is not None and old.state != "removed":
            try:
                agents.remove_agent(ledger, name, actor="demo")
                say(f"removed the previous demo agent {name} (its branch {old.branch} stays)")
            except agents.AgentError as exc:
                say(f"keeping the previous agent {name}: {exc}")
                continue
        names.append(name)
    return names


def next_tag(root: Path, state: dict) -> str:
    """demo, demo2, ...: one tag per session, the first that no branch uses yet."""
    n = len(state.get("sessions", [])) + 1
    while _git(root, "branch", "--list", f"autoresearch/{'demo' if n == 1 else f'demo{n}'}-*").strip():
        n += 1
    return "demo" if n == 1 else f"demo{n}"


def alive_agents(root: Path) -> list[str]:
    """The demo's agents whose process still runs."""
    names = {n for s in read_state(root).get("sessions", []) for n in s.get("agents", [])}
    if not names or not (root / ".autoresearch" / "ledger.db").is_file():
        return []
    with Ledger(root / ".autoresearch" / "ledger.db") as ledger:
        return sorted(a.name for a in ledger.agents() if a.name in names and agents.is_alive(a))


def start_agents(sandbox: Sandbox, count: int, seed: int, say: Say, *,
                 use_tmux: bool = True, beside_me: bool = False) -> DemoSession:
    """N search agents: tmux panes (beside this one when `beside_me`, else on a private detached
    server) when tmux exists and `use_tmux`, background processes otherwise."""
    busy = alive_agents(sandbox.root)
    if busy:
        raise DemoError(f"the demo in {sandbox.root} is still running (agents {', '.join(busy)}): "
                        f"stop it first with `cockpit demo --stop --dir {sandbox.root}`")
    state = read_state(sandbox.root)
    tmux = use_tmux and shutil.which("tmux") is not None
    socket = f"cockpit-demo-{zlib.crc32(str(sandbox.root).encode()):08x}" if tmux and not beside_me else ""
    session = DemoSession(next_tag(sandbox.root, state), [], "tmux" if tmux else "background", socket)
    state.setdefault("sessions", []).append(session.to_json())
    extra = bytecode_env(sandbox.root)  # in our environment while a tmux server we start copies it
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        with Ledger(sandbox.ledger_path) as ledger:
            for name in _free_names(ledger, count, say):
                argv = [sys.executable, "-m", "app.agents.search", "--seed", str(agent_seed(seed, name))]
                write_state(sandbox.root, state)
                if tmux:  # `cockpit agent new NAME --search`, but with a seed in the argv
                    agents.create_agent(ledger, sandbox.root, name, command=shlex.join(argv),
                                        tag=session.tag, socket=socket or None, session=TMUX_SESSION,
                                        cockpit_command=plain_shell(), actor="demo")
                    ledger.upsert_agent(name, actor="demo", kind="search")
                else:
                    session.processes.append(_start_in_background(ledger, sandbox, name, session.tag, argv))
                session.agents.append(name)
                state["sessions"][-1] = session.to_json()
                say(f"agent {name} started ({session.mode}) on branch autoresearch/{session.tag}-{name}")
    except (CockpitError, OSError) as exc:
        stop_demo(sandbox.root)  # the agents that did start (no other demo runs here)
        raise DemoError(f"could not start the agents: {exc}") from exc
    finally:
        write_state(sandbox.root, state)
        for key, value in saved.items():
            os.environ.pop(key) if value is None else os.environ.update({key: value})
    if socket:
        say(f"watch the agents' panes with: tmux -L {socket} attach -t {TMUX_SESSION}")
    if tmux:
        say(f"agents' panes: {panes.back_hint(socket or None)}")
    return session


def _start_in_background(ledger: Ledger, sandbox: Sandbox, name: str, tag: str,
                         argv: list[str]) -> subprocess.Popen:
    """What `cockpit agent new --search` does, with a background process instead of a pane."""
    branch, worktree = f"autoresearch/{tag}-{name}", (sandbox.root / agents.WORKTREES_DIR / name).resolve()
    git.add_worktree(sandbox.root, worktree, branch)
    ledger_path = ledger.path.resolve()
    kickoff = write_kickoff(worktree, kickoff_text(name, tag, branch, worktree, ledger_path))
    ledger.upsert_agent(name, actor="demo", event="agent-new", tag=tag, branch=branch,
                        worktree=str(worktree), command=shlex.join(["python", *argv[1:]]),
                        kind="search", state="starting", pane_id="", tmux_socket="", pid=None,
                        pid_start=None)
    (sandbox.root / AGENT_LOGS).mkdir(parents=True, exist_ok=True)
    with open(sandbox.root / AGENT_LOGS / f"{name}.log", "ab") as log:
        proc = subprocess.Popen(argv, cwd=worktree, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, **agent_env(name, tag, ledger_path, worktree, kickoff)})
    ledger.upsert_agent(name, actor="demo", event="agent-start", state="running", pid=proc.pid,
                        pid_start=process_identity(proc.pid))
    return proc


# ---------------------------------------------------------------------------
# Stopping

def stop_demo(root: Path, grace_s: float = 10.0) -> StopReport:
    """Stop every agent of the demo in `root`, their runs and training, and its tmux servers;
    then make sure nothing of it is left running."""
    root = Path(root).expanduser().resolve()
    if not is_demo(root):
        raise DemoError(f"{root} is not a demo sandbox (no {STATE_FILE})")
    sessions = read_state(root).get("sessions", [])
    names = {n for s in sessions for n in s.get("agents", [])}
    sockets = tuple(s["tmux_socket"] for s in sessions if s.get("tmux_socket"))
    ledger_path, report = root / ".autoresearch" / "ledger.db", StopReport()
    running: list[Agent] = []
    if ledger_path.is_file():
        with Ledger(ledger_path) as ledger:
            running = [a for a in ledger.agents() if a.name in names
                       and (a.state in ("starting", "running") or agents.is_alive(a))]
    watched = [p for a in running for p in agent_tree(a)]
    report.stopped = [a.name for a in running if agents.is_alive(a)]
    threads = [threading.Thread(target=stop_agent, args=(ledger_path, a), daemon=True) for a in running]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(grace_s + agents.STOP_GRACE_S)
    for socket in sockets:
        with suppress(panes.PaneError):
            panes.kill_server(socket)
            report.tmux_servers.append(socket)
    leftovers = {p.pid: p for p in [*watched, *sandbox_processes(root, sockets)] if alive(p)}
    report.killed = sorted(leftovers)
    term_then_kill(lambda: signal_all(leftovers.values(), psutil.Process.terminate),
                   lambda: signal_all([p for p in leftovers.values() if alive(p)], psutil.Process.kill),
                   lambda: not any(alive(p) for p in leftovers.values()), grace_s)
    psutil.wait_procs(list(leftovers.values()), timeout=3)
    if ledger_path.is_file():
        with Ledger(ledger_path) as ledger:
            report.lost = reap_lost(ledger, stale_after_s=0)
    report.survivors = sorted({p.pid for p in [*watched, *sandbox_processes(root, sockets)] if alive(p)})
    return report
