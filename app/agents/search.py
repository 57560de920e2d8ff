"""The built-in search agent: a hyperparameter search through `cockpit run`, no LLM.

It works like an LLM agent following program.md, in its own worktree: run the baseline, then
over and over pick one change to train.py's constants (app/agents/mutations.py) guided by the ledger's
history and `cockpit suggest`, commit it, `cockpit run` it, reset the commit when the run says
so, and leave a note of what it learned. A baseline for comparing LLM agents against.

Usage (in an agent's worktree; `cockpit agent new NAME --search` starts it there):
    python -m app.agents.search [--max-experiments N] [--seed S]

SIGTERM, SIGINT and SIGHUP stop it cleanly: the running `cockpit run` stops its training child,
the unmeasured commit is reset, and the worktree is left clean.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import git
from app.actions import add_note
from app.agents.mutations import (
    Move,
    MutationError,
    SearchState,
    apply_changes,
    changes_between,
    config_key,
    move_in_words,
    next_move,
    read_constants,
    values_of,
)
from app.config import load_settings
from app.ledger.report import suggestion
from app.ledger.store import Ledger, find_ledger_path
from app.ledger.vocabulary import is_kept
from app.policy import RESET_COMMAND
from app.run.plan import agent_name, tag_name

MEASURED = ("keep", "discard", "approved", "rejected")
BASELINE_ATTEMPTS = 3  # a baseline that crashes this often means train.py itself is broken
INFRA_ATTEMPTS = 3  # `cockpit run` refusing or failing this often in a row: give up
CAREFUL_RUNS = 3  # experiments in small steps after backing off from a crash streak
COMMIT_IDENTITY = {"GIT_AUTHOR_EMAIL": "search-agent@cockpit.invalid",
                   "GIT_COMMITTER_EMAIL": "search-agent@cockpit.invalid"}


class AgentStopped(Exception):
    """A signal asked the agent to stop."""


@dataclass
class Setup:
    worktree: Path
    main: Path
    name: str
    tag: str
    branch: str
    ledger_path: Path
    max_seq_len: int


def say(name: str, text: str) -> None:
    """One line to the agent's pane; a closed terminal (pane killed) is not an error."""
    with contextlib.suppress(OSError):
        print(f"[{name}] {text}", flush=True)


def _echo(stream: Any) -> None:
    """Pass the runner's progress lines on to our output, which may be a closed terminal:
    the runner itself never writes to the terminal, so a killed pane cannot break its run."""
    for line in iter(stream.readline, b""):
        with contextlib.suppress(OSError):
            sys.stdout.buffer.write(line)
            sys.stdout.flush()


class SearchAgent:
    def __init__(self, setup: Setup, rng: random.Random, max_experiments: int | None = None) -> None:
        self.s = setup
        self.rng = rng
        self.max_experiments = max_experiments
        self.stop_signal: int | None = None
        self.child: subprocess.Popen | None = None
        self.values_cache: dict[str, dict[str, Any] | None] = {}
        self.momentum: tuple[str, ...] = ()
        self.failed: set[str] = set()
        self.careful = 0
        self.started = 0

    # --- signals -----------------------------------------------------------------------------

    def request_stop(self, signum: int, frame: Any = None) -> None:
        self.stop_signal = signum
        child = self.child
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)  # the runner stops train.py and records `killed`

    def _check_stop(self) -> None:
        if self.stop_signal is not None:
            raise AgentStopped()

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> int:
        s = self.s
        if git.is_dirty(s.worktree):
            say(s.name, f"{s.worktree} has uncommitted changes: commit or discard them, then restart me")
            return 2
        say(s.name, f"search agent on {s.branch} (tag {s.tag}); ledger {s.ledger_path}")
        infra_failures = baseline_failures = 0
        try:
            while self.max_experiments is None or self.started < self.max_experiments:
                self._check_stop()
                with Ledger(s.ledger_path) as ledger:
                    needs_baseline = not self._measured(ledger)
                    move = None if needs_baseline else self._choose(ledger)
                if needs_baseline and baseline_failures >= BASELINE_ATTEMPTS:
                    say(s.name, "the baseline crashed every time: train.py needs a human; stopping")
                    return 1
                if not needs_baseline and move is None:
                    say(s.name, "every configuration within reach has been tried; stopping")
                    return 0
                try:
                    outcome = self._experiment(move)
                except MutationError as exc:
                    say(s.name, f"could not make that edit ({exc}); trying something else")
                    self.failed.update(move.keys if move else ())
                    continue
                if outcome is None:
                    infra_failures += 1
                    if infra_failures >= INFRA_ATTEMPTS:
                        say(s.name, f"`cockpit run` failed {infra_failures} times in a row; stopping")
                        return 3
                    continue
                infra_failures = 0
                if needs_baseline and outcome.get("decision") not in MEASURED:
                    baseline_failures += 1
        except AgentStopped:
            say(s.name, "stopped")
        except git.GitError as exc:
            say(s.name, f"git failed, stopping: {exc}")
            return 3
        finally:
            self._leave_clean()
        return 0

    def _measured(self, ledger: Ledger) -> bool:
        """Whether this branch has a clean measurement (its baseline) yet."""
        return any(e.decision in MEASURED for e in ledger.experiments(branch=self.s.branch))

    # --- choosing ----------------------------------------------------------------------------

    def _values_at(self, sha: str) -> dict[str, Any] | None:
        if sha not in self.values_cache:
            text = git.file_at(self.s.worktree, sha, "train.py") if sha else None
            try:
                self.values_cache[sha] = values_of(read_constants(text)) if text else None
            except MutationError:
                self.values_cache[sha] = None
        return self.values_cache[sha]

    def _choose(self, ledger: Ledger) -> Move | None:
        s = self.s
        head_values = values_of(read_constants((s.worktree / "train.py").read_text()))
        tried = {config_key(head_values)}
        for exp in ledger.experiments(tag=s.tag):
            values = self._values_at(exp.commit_sha)
            if values is not None:
                tried.add(config_key(values))
        advice = suggestion(ledger, notes=0, tag=s.tag)
        near = []
        for brief in advice["near_misses"]:
            exp = ledger.get(brief["id"])
            before, after = self._values_at(exp.parent_sha), self._values_at(exp.commit_sha)
            if before is not None and after is not None and changes_between(before, after):
                near.append((exp.id, changes_between(before, after)))
        baseline = self._values_at(git.head_sha(s.main)) or head_values
        state = SearchState(values=head_values, baseline=baseline, tried=tried,
                            strategy=advice["strategy"], underexplored=advice["underexplored"],
                            near_misses=near, momentum=self.momentum, failed=self.failed,
                            careful=self.careful > 0)
        move = next_move(state, self.rng, s.max_seq_len)
        if move is not None:
            say(s.name, f"strategy {advice['strategy']} ({advice['reason']}): {move.description}")
        return move

    # --- one experiment ----------------------------------------------------------------------

    def _experiment(self, move: Move | None) -> dict[str, Any] | None:
        s = self.s
        commit = self._commit(move) if move is not None else ""
        description = move.description if move else "baseline: train.py as it is"
        hypothesis = move.hypothesis if move else "the reference every change is measured against"
        category = move.category if move else "other"
        self.started += 1
        result = self._cockpit_run(description, hypothesis, category)
        if result is None:
            self._undo(commit)
            return None
        decision = result.get("decision") or "?"
        if result.get("git_action") == RESET_COMMAND:
            self._undo(commit)
        self._learn(move, result)
        text = self._lesson(description, move, result)
        say(s.name, f"#{result.get('id')} {decision.upper()}: {text}")
        try:
            with Ledger(s.ledger_path) as ledger:
                add_note(ledger, text, exp_id=result.get("id"), actor=s.name, agent=s.name)
                if result.get("rethink"):
                    self._back_off(ledger)
        except Exception as exc:  # a note is worth less than the search going on
            say(s.name, f"could not write the note: {exc}")
        self._check_stop()
        return result

    def _commit(self, move: Move) -> str:
        s = self.s
        path = s.worktree / "train.py"
        original = path.read_text()
        path.write_text(apply_changes(original, move.changes))
        try:
            env = {**COMMIT_IDENTITY, "GIT_AUTHOR_NAME": f"search agent {s.name}",
                   "GIT_COMMITTER_NAME": f"search agent {s.name}"}
            git.run(s.worktree, "-c", "commit.gpgsign=false", "commit", "--quiet", "--no-verify",
                 "-m", move.description, "--", "train.py", env=env)
        except git.GitError:
            path.write_text(original)
            raise
        return git.head_sha(s.worktree)

    def _undo(self, commit: str) -> None:
        """Reset our own commit, and only ours: never a commit we did not make."""
        if commit and git.head_sha(self.s.worktree) == commit:
            git.run(self.s.worktree, "reset", "--quiet", "--hard", "HEAD~1")

    def _cockpit_run(self, description: str, hypothesis: str, category: str) -> dict[str, Any] | None:
        s = self.s
        argv = [sys.executable, "-m", "app.cli", "run", "-m", description, "--hypothesis",
                hypothesis, "--category", category, "--agent", s.name, "--tag", s.tag, "--json"]
        say(s.name, f"$ cockpit run -m {json.dumps(description)} --category {category}")
        env = {**os.environ, "COCKPIT_AGENT": s.name, "COCKPIT_TAG": s.tag}
        child = subprocess.Popen(argv, cwd=s.worktree, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.child = child
        if self.stop_signal is not None:  # a signal that came while the run was starting
            self.request_stop(self.stop_signal)
        echo = threading.Thread(target=_echo, args=(child.stderr,), daemon=True)
        echo.start()
        assert child.stdout is not None
        out = child.stdout.read()
        code = child.wait()
        echo.join(timeout=5)
        self.child = None
        try:
            result = json.loads(out)
        except (json.JSONDecodeError, UnicodeDecodeError):
            say(s.name, f"`cockpit run` exited with status {code} and no result")
            return None
        return result if isinstance(result, dict) else None

    # --- learning ----------------------------------------------------------------------------

    def _learn(self, move: Move | None, result: dict[str, Any]) -> None:
        decision = result.get("decision")
        if self.careful:
            self.careful -= 1
        if move is None:
            return
        if decision in ("keep", "approved"):
            self.momentum = move.keys
        elif decision in ("crash", "timeout"):
            self.failed.update(move.keys)
            self.momentum = ()

    @staticmethod
    def _lesson(description: str, move: Move | None, result: dict[str, Any]) -> str:
        decision = result.get("decision") or "?"
        val, delta = result.get("val_bpb"), result.get("delta_vs_branch")
        measured = f"val_bpb {val:.6f}" if isinstance(val, (int, float)) else "no val_bpb"
        if isinstance(delta, (int, float)):
            measured += f" ({delta:+.6f} vs branch best)"
        if move is None:
            lesson = ("the search starts from here" if decision in MEASURED
                      else f"the baseline did not finish ({result.get('reason', '')})")
            return f"baseline: {decision}, {measured}; {lesson}"
        what = " and ".join(move_in_words(key) for key in move.keys)
        if decision in ("keep", "approved"):
            lesson = f"{what} helped ({move.hypothesis}); next, further the same way"
        elif "near-miss" in result.get("flags", []):
            lesson = f"{what} came close to the best: worth combining with another near-miss"
        elif decision in ("discard", "rejected"):
            lesson = f"{what} does not help at this scale"
        elif decision in ("crash", "timeout"):
            lesson = f"{what} fails ({result.get('reason', '')}); not again"
        else:
            lesson = f"not measured ({result.get('reason', '')})"
        return f"tried {description}: {decision}, {measured}; lesson: {lesson}"

    def _back_off(self, ledger: Ledger) -> None:
        """A crash streak: go back to the branch's last kept commit and take small steps."""
        s = self.s
        kept = [e for e in ledger.experiments(branch=s.branch, newest_first=True)
                if is_kept(e) and e.commit_sha]
        self.careful = CAREFUL_RUNS
        self.momentum = ()
        if kept and git.head_sha(s.worktree) != kept[0].commit_sha:
            authors = git.run(s.worktree, "log", "--format=%ae", f"{kept[0].commit_sha}..HEAD").split()
            if authors and set(authors) == {COMMIT_IDENTITY["GIT_AUTHOR_EMAIL"]}:  # only our commits
                git.run(s.worktree, "reset", "--quiet", "--hard", kept[0].commit_sha)
        target = f"#{kept[0].id}" if kept else "the branch head"
        say(s.name, f"crash streak: backing off to the last kept config ({target}), small steps next")
        add_note(ledger, f"{s.name}: crash streak, backed off to the last kept config ({target}); "
                 "small steps for a while", actor=s.name, agent=s.name)

    def _leave_clean(self) -> None:
        """Nothing of ours uncommitted, and no commit of ours that was never measured."""
        s = self.s
        try:
            if git.is_dirty(s.worktree, ["train.py"]):
                git.run(s.worktree, "checkout", "--", "train.py")
            with Ledger(s.ledger_path) as ledger:
                head = git.head_sha(s.worktree)
                measured = any(e.commit_sha == head and e.decision in MEASURED
                               for e in ledger.experiments(branch=s.branch))
                author = git.run(s.worktree, "log", "-1", "--format=%ae").strip()
            mine = author == COMMIT_IDENTITY["GIT_AUTHOR_EMAIL"]
            if mine and not measured:
                git.run(s.worktree, "reset", "--quiet", "--hard", "HEAD~1")
        except Exception as exc:
            say(s.name, f"could not tidy the worktree: {exc}")


# ---------------------------------------------------------------------------
# Entry point

def resolve_setup(worktree: Path) -> Setup:
    main = git.main_worktree(worktree)
    settings = load_settings(main)
    env = {**settings.train_env, **os.environ}
    try:
        max_seq_len = int(env.get("AUTORESEARCH_MAX_SEQ_LEN", "2048"))
    except ValueError:
        max_seq_len = 2048
    branch = git.current_branch(worktree)
    if branch is None:
        raise git.GitError(f"{worktree}: HEAD is detached; the search agent needs a branch")
    name = agent_name(None, worktree)
    ledger_path = find_ledger_path(worktree)
    with Ledger(ledger_path) as ledger:
        tag = tag_name(None, ledger, name, branch, settings)
    return Setup(worktree, main, name, tag, branch, ledger_path, max_seq_len)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.agents.search", description=__doc__.split("\n")[0])
    parser.add_argument("--max-experiments", type=int, metavar="N", help="stop after N experiments")
    parser.add_argument("--seed", type=int, help="random seed (default: a fresh one, printed)")
    parser.add_argument("--worktree", type=Path, default=Path.cwd(),
                        help="the agent's worktree (default: the current folder)")
    args = parser.parse_args(argv)
    try:
        top = git.run(args.worktree, "rev-parse", "--show-toplevel").strip()
        setup = resolve_setup(Path(top))
    except Exception as exc:
        print(f"search agent: {exc}", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    say(setup.name, f"seed {seed} (pass --seed {seed} to repeat these choices)")
    agent = SearchAgent(setup, random.Random(seed), args.max_experiments)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, agent.request_stop)
    return agent.run()


if __name__ == "__main__":
    sys.exit(main())
