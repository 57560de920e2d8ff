"""`cockpit demo`: the offline corpus, the sandbox, agents started and stopped leaving no process
behind (background and tmux), and a real headless demo end to end."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from test_search_agent import git, standin_train_py

from app.agents import panes
from app.agents.mutations import read_constants, values_of
from app.config import load_settings
from app.demo import corpus
from app.demo import sandbox as demo
from app.ledger.store import Ledger
from waiting import wait_for

LONG = "This sentence is prose that explains what the function does, in plain English words. " * 3


def quiet(_: str) -> None:
    """A `say` that drops progress lines."""


def processes_in(root: Path) -> list[psutil.Process]:
    """Every process working inside `root` or naming it on its command line."""
    found = []
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        cwd, argv = proc.info.get("cwd") or "", " ".join(proc.info.get("cmdline") or [])
        if proc.pid != os.getpid() and (cwd.startswith(str(root)) or str(root) in argv):
            try:
                if proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except psutil.Error:
                pass
    return found


@pytest.fixture
def restore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the demo sets in os.environ is undone after the test."""
    for key in ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE", "TMUX", "TMUX_PANE"):
        if key in os.environ:
            monkeypatch.setenv(key, os.environ[key])
    monkeypatch.delenv("TMUX", raising=False)
    monkeypatch.delenv("COCKPIT_LEDGER", raising=False)


# ---------------------------------------------------------------------------
# Corpus

def test_corpus_takes_long_prose_docstrings_only(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    (lib / "test").mkdir(parents=True)
    (lib / "pkg").mkdir()
    (lib / "a.py").write_text(f'"""{LONG}"""\n\ndef f():\n    """{LONG}\n\n    >>> f()\n    ... more\n'
                              '    """\ndef g():\n    """Short."""\n')
    (lib / "pkg" / "b.py").write_text(f'class B:\n    """B: {LONG}"""\n')
    (lib / "test" / "test_x.py").write_text(f'"""{LONG}"""\n')
    (lib / "broken.py").write_text('def (:\n')
    (lib / "unicode.py").write_text(f'"""{LONG} café"""\n')
    out = tmp_path / "corpus.jsonl"
    stats = corpus.write_corpus(out, root=lib)
    docs = [json.loads(line)["text"] for line in out.read_text().splitlines()]
    assert docs == [LONG.strip(), LONG.strip(), f"B: {LONG}".strip()]
    assert (stats.documents, stats.files_read) == (3, 4)
    first = out.read_bytes()
    corpus.write_corpus(out, root=lib)
    assert out.read_bytes() == first, "deterministic"


def test_corpus_from_this_interpreters_stdlib_is_offline_deterministic_and_sized(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    stats = corpus.write_corpus(a, max_chars=60_000)
    corpus.write_corpus(b, max_chars=60_000)
    assert a.read_bytes() == b.read_bytes()
    docs = [json.loads(line)["text"] for line in a.read_text().splitlines()]
    assert 60_000 <= stats.chars < 60_000 + 50_000 and len(docs) == stats.documents > 20
    assert all(len(d) >= corpus.MIN_DOC_CHARS and ">>>" not in d for d in docs)


def test_no_docstrings_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "x.py").write_text("x = 1\n")
    with pytest.raises(corpus.CorpusError, match="found 0 docstrings"):
        corpus.write_corpus(tmp_path / "c.jsonl", root=tmp_path / "lib")
    assert not (tmp_path / "c.jsonl").exists()


# ---------------------------------------------------------------------------
# Sandbox

def test_sandbox_is_a_smoke_scale_repository(tmp_path: Path) -> None:
    sandbox = demo.build_sandbox(tmp_path / "d", 7, quiet)
    root = sandbox.root
    assert git(root, "status", "--porcelain") == "" and len(git(root, "log", "--oneline").splitlines()) == 1
    values = values_of(read_constants((root / "train.py").read_text()))
    assert {k: values[k] for k in demo.SMOKE_CONSTANTS} == demo.SMOKE_CONSTANTS
    env = load_settings(root).train_env
    assert env["AUTORESEARCH_TIME_BUDGET"] == "7" and env["OMP_NUM_THREADS"] == "1"
    assert Path(env["AUTORESEARCH_CACHE"]) == root / ".autoresearch" / "cache"
    assert git(root, "check-ignore", ".autoresearch/cache").strip() == ".autoresearch/cache"
    for name in ("prepare.py", "program.md"):
        assert (root / name).read_bytes() == demo.core_file(name).read_bytes()
    again = demo.build_sandbox(root, 9, quiet)
    assert again.reused and load_settings(root).train_env["AUTORESEARCH_TIME_BUDGET"] == "9"
    assert git(root, "status", "--porcelain") == ""


def test_refuses_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(demo.DemoError, match="not a demo sandbox"):
        demo.build_sandbox(tmp_path / "mine", None, quiet)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


# ---------------------------------------------------------------------------
# Agents started and stopped (a stand-in train.py that trains "forever")

def standin_sandbox(root: Path) -> demo.Sandbox:
    sandbox = demo.build_sandbox(root, 3, quiet)
    (sandbox.root / "train.py").write_text(standin_train_py(demo.SMOKE_CONSTANTS))
    git(sandbox.root, "commit", "--quiet", "-am", "stand-in train.py")
    return sandbox


def running(ledger_path: Path) -> int:
    """How many of the demo's experiments are running now (0 before the ledger exists)."""
    if not ledger_path.exists():
        return 0
    with Ledger(ledger_path) as ledger:
        return len([e for e in ledger.live() if e.status == "running"])


def assert_stopped(sandbox: demo.Sandbox, report: demo.StopReport, names: list[str]) -> None:
    assert sorted(report.stopped) == sorted(names) and report.survivors == []
    assert processes_in(sandbox.root) == []
    with Ledger(sandbox.ledger_path) as ledger:
        runs = ledger.experiments()
        assert runs and all(e.status == "finished" for e in runs)
        assert {e.decision for e in runs} <= {"killed", "lost"}
        assert {a.name: a.state for a in ledger.agents()} == dict.fromkeys(names, "stopped")
    for name in names:
        worktree = sandbox.root / ".autoresearch" / "worktrees" / name
        assert git(worktree, "status", "--porcelain", "--untracked-files=no") == ""


@pytest.mark.usefixtures("restore_env")
def test_background_agents_stop_leaving_no_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_SLEEP", "300")
    monkeypatch.setenv("STANDIN_SLEEP_ALWAYS", "1")
    sandbox = standin_sandbox(tmp_path / "d")
    session = demo.start_agents(sandbox, 2, 1, quiet, use_tmux=False)
    assert session.mode == "background" and session.agents == ["ada", "bo"]
    wait_for(lambda: running(sandbox.ledger_path) >= 2, timeout=120, interval=0.3,
             message="2 experiments never ran at once")
    with pytest.raises(demo.DemoError, match="still running"):
        demo.start_agents(sandbox, 1, 1, quiet, use_tmux=False)
    report = demo.stop_demo(sandbox.root)
    for proc in session.processes:
        proc.wait(timeout=10)
    assert_stopped(sandbox, report, ["ada", "bo"])
    log = (sandbox.root / demo.AGENT_LOGS / "ada.log").read_text()
    assert "[ada] seed" in log and "stopped" in log


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.usefixtures("restore_env")
def test_tmux_agents_and_their_private_server_stop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STANDIN_SLEEP", "300")
    monkeypatch.setenv("STANDIN_SLEEP_ALWAYS", "1")
    sandbox = standin_sandbox(tmp_path / "d")
    said: list[str] = []
    session = demo.start_agents(sandbox, 2, 1, said.append, use_tmux=True)
    try:
        assert session.mode == "tmux" and session.tmux_socket
        every_pane = panes.list_panes(demo.TMUX_SESSION, session.tmux_socket)
        agent_panes = [p for p in every_pane if p.agent]
        assert sorted(p.agent for p in agent_panes) == ["ada", "bo"]
        cockpit = next(p for p in every_pane if not p.agent)  # the cockpit keeps 60 % of its window
        beside = [p for p in agent_panes if p.window_id == cockpit.window_id]
        assert beside and cockpit.width >= 0.6 * (cockpit.width + beside[0].width + 1)
        assert any(re.search(r"back to the cockpit: \S+ ; \(last pane\) or \S+ l", s) for s in said)
        wait_for(lambda: running(sandbox.ledger_path) >= 2, timeout=120, interval=0.3,
                 message="2 experiments never ran at once")
        report = demo.stop_demo(sandbox.root)
    finally:
        if session.tmux_socket:
            panes.kill_server(session.tmux_socket)
    assert report.tmux_servers == [session.tmux_socket]
    assert not panes.has_session(demo.TMUX_SESSION, session.tmux_socket)
    assert_stopped(sandbox, report, ["ada", "bo"])


# ---------------------------------------------------------------------------
# The real thing, headless: real training, real agents, stopped with Ctrl-C

@pytest.mark.slow
def test_headless_demo_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE", "COCKPIT_LEDGER")}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "demo", "--dir", str(root), "--no-tui",
                             "--agents", "2", "--budget", "4", "--duration", "400", "--seed", "1"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    ledger_path = root / ".autoresearch" / "ledger.db"
    finished: list = []

    def enough_finished() -> bool:
        """Both agents finished experiments (3 in all), or the demo ended early (asserted below)."""
        if ledger_path.exists():
            with Ledger(ledger_path) as ledger:
                finished[:] = [e for e in ledger.experiments()
                               if e.decision in ("keep", "discard", "crash")]
        both = {e.agent for e in finished} == {"ada", "bo"}
        return proc.poll() is not None or (both and len(finished) >= 3)

    try:
        wait_for(enough_finished, timeout=200, interval=1.0)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, out
    assert {e.agent for e in finished} == {"ada", "bo"} and len(finished) >= 3, out
    assert "no process left behind" in out and "prepare: Tokenizer: trained" in out
    assert processes_in(root) == []
    with Ledger(ledger_path) as ledger:
        runs = ledger.experiments()
        notes = ledger.notes()
        kinds = {a.name: a.kind for a in ledger.agents()}
    assert kinds == {"ada": "search", "bo": "search"}
    baselines = [e for e in runs if e.description.startswith("baseline")]
    assert sorted(e.agent for e in baselines) == ["ada", "bo"]
    assert all(e.decision == "keep" and 0 < e.val_bpb < 10 for e in baselines), [e.reason for e in baselines]
    assert all(e.time_budget == 4 and e.vocab_size == 512 for e in runs if e.val_bpb is not None)
    assert {n.author for n in notes if n.experiment_id} == {"ada", "bo"}
    assert {e.status for e in runs} == {"finished"}
