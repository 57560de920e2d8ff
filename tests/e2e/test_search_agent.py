"""The built-in search agent: constant edits, mutation proposals and choices, and real runs
through `cockpit run` against a real git repository and a stand-in train.py."""
from __future__ import annotations

import ast
import math
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from app.agents.mutations import (
    SEARCHED,
    MutationError,
    SearchState,
    apply_changes,
    config_key,
    format_value,
    next_move,
    propose_moves,
    read_constants,
    values_of,
)
from app.corefiles import core_file
from app.ledger.store import Experiment, Ledger
from waiting import wait_for

REAL_TRAIN = core_file("train.py").read_text()
BANNER_START = "# Hyperparameters (edit these directly, no CLI flags needed)"
BANNER_END = "# Setup: tokenizer, model, optimizer, dataloader"
IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}

# ---------------------------------------------------------------------------
# A stand-in train.py: the real hyperparameter lines, then a fake run in train.py's output format.
# Only a higher EMBEDDING_LR helps; every other change is worse or neutral (so it is discarded).

STANDIN_BODY = '''
import os, sys, time
BASE = {base!r}
changed = any(globals()[k] != v for k, v in BASE.items())
if changed and os.environ.get("STANDIN_CRASH"):
    raise RuntimeError("stand-in crash")
sleeps = changed or os.environ.get("STANDIN_SLEEP_ALWAYS")
end = time.time() + (float(os.environ.get("STANDIN_SLEEP", "0")) if sleeps else 0)
step = 0
while True:
    print(f"\\rstep {{step:05d}} (50.0%) | loss: 3.000000 | lrm: 1.00 | dt: 100ms | tok/sec: 20,000 | "
          f"mfu: 0.0% | epoch: 1 | remaining: 1s    ", end="", flush=True)
    step += 1
    if time.time() >= end:
        break
    time.sleep(0.2)
import math
val = (1.0 - 0.01 * math.log2(EMBEDDING_LR / 0.6) + 0.01 * abs(math.log2(MATRIX_LR / 0.04))
       + 0.01 * abs(DEPTH - BASE["DEPTH"]) + 0.005 * (WINDOW_PATTERN != BASE["WINDOW_PATTERN"]))
print()
print("---")
for key, value in [("val_bpb", f"{{val:.6f}}"), ("training_seconds", "1.0"), ("total_seconds", "1.5"),
                   ("peak_vram_mb", "100.0"), ("mfu_percent", "0.00"), ("total_tokens_M", "0.1"),
                   ("num_steps", "10"), ("num_params_M", "0.5"), ("depth", str(DEPTH)),
                   ("time_budget", "1"), ("max_seq_len", "256"), ("eval_tokens", "16384"),
                   ("vocab_size", "512"), ("device", "cpu"), ("device_name", "stand-in"),
                   ("attention", "sdpa")]:
    print(f"{{key + ':':<18}}{{value}}")
'''


def standin_train_py(constants: dict | None = None) -> str:
    """The real hyperparameter section (optionally rewritten) and a fast fake training body."""
    section = REAL_TRAIN.split(BANNER_START, 1)[1].split(BANNER_END, 1)[0]
    section = "\n".join(line for line in section.splitlines() if not line.startswith("# ---"))
    source = f'"""Stand-in train.py for tests."""\n{section}\n'
    if constants:
        source = apply_changes(source, constants)
    base = values_of(read_constants(source))
    return source + STANDIN_BODY.format(base=base)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True,
                          env={**os.environ, **IDENTITY}).stdout


def make_repo(root: Path, train_py: str) -> Path:
    root.mkdir(parents=True)
    (root / "train.py").write_text(train_py)
    (root / "prepare.py").write_text("# stand-in prepare.py\n")
    (root / "pyproject.toml").write_text('[tool.cockpit]\ntrusted_eval = "off"  # a stand-in: no weights\n')
    (root / ".gitignore").write_text(".autoresearch/\nrun.log\n")
    git(root, "init", "--quiet", "--initial-branch=main")
    git(root, "add", ".")
    git(root, "commit", "--quiet", "-m", "baseline")
    return root


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", standin_train_py())


def add_agent_worktree(repo: Path, name: str, tag: str = "t") -> Path:
    worktree = repo / ".autoresearch" / "worktrees" / name
    git(repo, "worktree", "add", "--quiet", "-b", f"autoresearch/{tag}-{name}", str(worktree))
    return worktree


def start_agent(worktree: Path, *args: str, **env: str) -> subprocess.Popen:
    full_env = {**os.environ, "COCKPIT_AGENT": worktree.name, "COCKPIT_TAG": "t", **env}
    full_env.pop("COCKPIT_LEDGER", None)
    return subprocess.Popen([sys.executable, "-m", "app.agents.search", *args], cwd=worktree,
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def values_at(repo: Path, sha: str) -> dict:
    return values_of(read_constants(git(repo, "show", f"{sha}:train.py")))


# ---------------------------------------------------------------------------
# Reading and editing constants

def test_reads_every_searched_constant_of_the_real_train_py() -> None:
    constants = read_constants(REAL_TRAIN)
    assert set(SEARCHED) <= set(constants)
    assert constants["TOTAL_BATCH_SIZE"].value == 2**19 and constants["TOTAL_BATCH_SIZE"].expr == "2**19"
    assert constants["ADAM_BETAS"].value == (0.8, 0.95) and constants["WINDOW_PATTERN"].value == "SSSL"
    assert "DEVICE_TYPE" not in constants, "a call is not a literal constant"


@pytest.mark.slow
def test_every_proposed_edit_is_a_small_valid_diff_keeping_comments() -> None:
    smoke = apply_changes(REAL_TRAIN, {"DEPTH": 2, "TOTAL_BATCH_SIZE": 2048, "DEVICE_BATCH_SIZE": 8})
    for source, max_seq_len in ((REAL_TRAIN, 2048), (smoke, 256)):
        values = values_of(read_constants(source))
        moves = propose_moves(values, max_seq_len=max_seq_len)
        assert {m.category for m in moves} >= {"lr", "architecture", "attention", "schedule", "batch"}
        for move in moves:
            edited = apply_changes(source, move.changes)
            ast.parse(edited)
            old_lines, new_lines = source.splitlines(), edited.splitlines()
            changed = [i for i, (a, b) in enumerate(zip(old_lines, new_lines)) if a != b]
            assert len(old_lines) == len(new_lines) and len(changed) == len(move.changes)
            for i in changed:
                name = old_lines[i].split(" = ")[0]
                assert name in move.changes
                comment = old_lines[i].index("#")
                assert old_lines[i][comment:] == new_lines[i][new_lines[i].index("#"):]
                if len(new_lines[i].split("#")[0].rstrip()) < comment:  # room: the comment keeps its column
                    assert new_lines[i].index("#") == comment
            after = values_of(read_constants(edited))
            assert {k: after[k] for k in move.changes} == move.changes
            if move.category == "batch":
                tokens = after["DEVICE_BATCH_SIZE"] * max_seq_len
                assert after["TOTAL_BATCH_SIZE"] % tokens == 0, move.description


def test_values_are_written_in_the_style_they_replace() -> None:
    assert format_value(2**18, "2**19") == "2**18"
    assert format_value(1024, "8 * 256") == "4 * 256"
    assert format_value(0.08, "0.04") == "0.08" and format_value(1.0) == "1.0"
    assert format_value((0.9, 0.95)) == "(0.9, 0.95)" and format_value("SL") == '"SL"'
    edited = apply_changes("X = 8 * 256  # tokens\nY = 2\n", {"X": 4096})
    assert edited == "X = 16 * 256  # tokens\nY = 2\n"


def test_bad_edits_are_refused() -> None:
    with pytest.raises(MutationError, match="no one-line literal constant NOPE"):
        apply_changes(REAL_TRAIN, {"NOPE": 1})
    with pytest.raises(MutationError, match="cannot write"):
        apply_changes(REAL_TRAIN, {"DEPTH": [1, 2]})
    with pytest.raises(MutationError, match="does not parse"):
        read_constants("DEPTH = (\n")


# ---------------------------------------------------------------------------
# Choosing

SMOKE_VALUES = values_of(read_constants(apply_changes(REAL_TRAIN, {"DEPTH": 2, "TOTAL_BATCH_SIZE": 2048,
                                                                   "DEVICE_BATCH_SIZE": 8})))


def smoke_values() -> dict:
    return dict(SMOKE_VALUES)


@pytest.mark.parametrize("strategy", ["explore", "exploit", "combine", "ablation"])
def test_never_proposes_a_configuration_already_tried(strategy: str) -> None:
    rng = random.Random(3)
    values = smoke_values()
    tried = {config_key(values)}
    for _ in range(60):
        move = next_move(SearchState(values=values, baseline=smoke_values(), tried=set(tried),
                                     strategy=strategy), rng, max_seq_len=256)
        assert move is not None
        new = {**values, **move.changes}
        assert config_key(new) not in tried
        tried.add(config_key(new))
        if rng.random() < 0.5:  # sometimes the move was kept: the search moves on from there
            values = new


def test_after_a_keep_it_goes_further_the_same_way() -> None:
    values = smoke_values()
    state = SearchState(values=values, baseline=values, tried={config_key(values)},
                        strategy="exploit", momentum=("MATRIX_LR:up",))
    move = next_move(state, random.Random(0), max_seq_len=256)
    assert move is not None and set(move.changes) == {"MATRIX_LR"}
    assert move.changes["MATRIX_LR"] > values["MATRIX_LR"]


def test_combine_applies_two_near_misses_together() -> None:
    values = smoke_values()
    state = SearchState(values=values, baseline=values, tried={config_key(values)}, strategy="combine",
                        near_misses=[(7, {"MATRIX_LR": 0.06}), (9, {"WARMDOWN_RATIO": 0.6})])
    move = next_move(state, random.Random(0), max_seq_len=256)
    assert move is not None and move.changes == {"MATRIX_LR": 0.06, "WARMDOWN_RATIO": 0.6}
    assert "#7" in move.hypothesis and "#9" in move.hypothesis


def test_ablation_goes_back_to_mains_value() -> None:
    baseline = smoke_values()
    values = {**baseline, "WEIGHT_DECAY": 0.4}
    state = SearchState(values=values, baseline=baseline, tried={config_key(values)}, strategy="ablation")
    move = next_move(state, random.Random(0), max_seq_len=256)
    assert move is not None and move.changes == {"WEIGHT_DECAY": baseline["WEIGHT_DECAY"]}


def test_crashed_moves_are_avoided_and_careful_steps_are_small() -> None:
    values = smoke_values()
    failed = {m.keys[0] for m in propose_moves(values, max_seq_len=256) if m.category != "lr"}
    state = SearchState(values=values, baseline=values, tried={config_key(values)}, failed=failed,
                        careful=True)
    for seed in range(10):
        move = next_move(state, random.Random(seed), max_seq_len=256)
        assert move is not None and move.category == "lr"
        (name, new), = move.changes.items()
        assert math.isclose(max(new / values[name], values[name] / new), 1.5, rel_tol=0.01)


# ---------------------------------------------------------------------------
# Real runs: `python -m app.agents.search` in a worktree, `cockpit run` on a stand-in train.py

@pytest.mark.slow
def test_search_run_records_resets_and_notes(repo: Path) -> None:
    worktree = add_agent_worktree(repo, "ada")
    base_sha = git(repo, "rev-parse", "HEAD").strip()
    agent = start_agent(worktree, "--max-experiments", "4", "--seed", "5")
    out, _ = agent.communicate(timeout=240)
    assert agent.returncode == 0, out
    with Ledger(repo / ".autoresearch" / "ledger.db") as ledger:
        runs = ledger.experiments(agent="ada")
        notes = ledger.notes(agent="ada")
    assert len(runs) == 4 and [r.status for r in runs] == ["finished"] * 4
    assert runs[0].commit_sha == base_sha and runs[0].description.startswith("baseline")
    assert all(r.decision in ("keep", "discard") for r in runs), [(r.decision, r.reason) for r in runs]
    on_branch = set(git(worktree, "rev-list", "HEAD").split())
    for run in runs[1:]:
        assert (run.commit_sha in on_branch) == (run.decision == "keep"), run.description
        assert run.category and run.hypothesis and " -> " in run.description
    assert any(r.decision == "discard" for r in runs[1:])
    configs = [config_key(values_at(repo, r.commit_sha)) for r in runs]
    assert len(set(configs)) == len(configs), "no configuration twice"
    assert sorted(n.experiment_id for n in notes) == [r.id for r in runs]
    assert all(n.author == "ada" and re.match(r"(tried|baseline)", n.text) for n in notes)
    assert git(worktree, "status", "--porcelain", "--untracked-files=no") == ""
    assert "$ cockpit run -m" in out and "seed 5" in out


def test_sigterm_stops_the_run_and_leaves_the_worktree_clean(repo: Path) -> None:
    worktree = add_agent_worktree(repo, "bo")
    base_sha = git(repo, "rev-parse", "HEAD").strip()
    agent = start_agent(worktree, "--seed", "1", STANDIN_SLEEP="120")
    ledger_path = repo / ".autoresearch" / "ledger.db"

    def second_running() -> Experiment | None:
        if not ledger_path.exists():
            return None
        with Ledger(ledger_path) as ledger:
            return next((e for e in ledger.live() if e.status == "running" and e.id > 1), None)

    running = wait_for(second_running, timeout=120, interval=0.3,
                       message="the second experiment never started")
    train_pid = running.pid
    agent.send_signal(signal.SIGTERM)
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 0, out
    with Ledger(ledger_path) as ledger:
        assert ledger.get(running.id).decision == "killed"
    assert git(worktree, "rev-parse", "HEAD").strip() == base_sha, "the unmeasured commit is reset"
    assert git(worktree, "status", "--porcelain", "--untracked-files=no") == ""
    assert not psutil.pid_exists(train_pid) or psutil.Process(train_pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.slow
def test_three_crashes_back_off_to_the_last_keep(repo: Path) -> None:
    worktree = add_agent_worktree(repo, "cy")
    base_sha = git(repo, "rev-parse", "HEAD").strip()
    agent = start_agent(worktree, "--max-experiments", "4", "--seed", "2", STANDIN_CRASH="1")
    out, _ = agent.communicate(timeout=240)
    assert agent.returncode == 0, out
    with Ledger(repo / ".autoresearch" / "ledger.db") as ledger:
        runs = ledger.experiments(agent="cy")
        notes = [n.text for n in ledger.notes(agent="cy")]
    assert [r.decision for r in runs] == ["keep", "crash", "crash", "crash"]
    assert any("crash streak" in n for n in notes), notes
    assert len({r.description for r in runs}) == 4
    assert git(worktree, "rev-parse", "HEAD").strip() == base_sha
    assert git(worktree, "status", "--porcelain", "--untracked-files=no") == ""
    assert "backing off" in out


def test_refuses_to_start_in_a_dirty_worktree(repo: Path) -> None:
    worktree = add_agent_worktree(repo, "di")
    (worktree / "train.py").write_text((worktree / "train.py").read_text() + "# human edit\n")
    agent = start_agent(worktree, "--max-experiments", "1")
    out, _ = agent.communicate(timeout=60)
    assert agent.returncode == 2 and "uncommitted changes" in out
    assert (worktree / "train.py").read_text().endswith("# human edit\n"), "the human's edit stays"
    with Ledger(repo / ".autoresearch" / "ledger.db") as ledger:
        assert ledger.experiments() == []
