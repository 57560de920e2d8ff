"""Shared helpers for the prepare.py / train.py tests and the CPU benchmark.

Run as a script, it measures the val_bpb of train.py's model untrained:
    python tests/corehelpers.py untrained-bpb PATH/TO/train.py
(train.py's setup runs exactly as in a real run, up to its "Training loop" banner.)
"""
from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# Smoke scale: a model that learns the synthetic corpus in seconds on 2 CPU cores.
SMOKE_ENV = {
    "AUTORESEARCH_VOCAB_SIZE": "512",
    "AUTORESEARCH_MAX_SEQ_LEN": "256",
    "AUTORESEARCH_EVAL_TOKENS": "16384",
    "AUTORESEARCH_TIME_BUDGET": "10",
}
SMOKE_CONSTANTS = {
    "DEPTH": "2",
    "ASPECT_RATIO": "64",
    "HEAD_DIM": "64",
    "TOTAL_BATCH_SIZE": "8 * 256",
    "DEVICE_BATCH_SIZE": "8",
}
SUMMARY_KEYS = [
    "val_bpb", "training_seconds", "total_seconds", "peak_vram_mb", "mfu_percent", "total_tokens_M",
    "num_steps", "num_params_M", "depth", "time_budget", "max_seq_len", "eval_tokens", "vocab_size",
    "device", "device_name", "attention",
]

_NAMES = [a + b for a in ("ba", "ko", "mi", "ta", "ren", "sol", "vi", "dar")
          for b in ("lo", "na", "rek", "ti", "mus", "va")]
_PLACES = [f"the {a} {b}" for a in ("old", "northern", "quiet", "busy", "little")
           for b in ("harbor", "mill", "library", "market", "farm", "bridge")]
_ANIMALS = ["cat", "dog", "goat", "horse", "owl", "fox", "hen", "sheep", "badger", "heron", "mule", "otter"]
_COLORS = ["red", "green", "blue", "yellow", "black", "white", "brown", "grey", "orange", "purple"]
_VERBS = [("carries", "carried"), ("paints", "painted"), ("sells", "sold"), ("finds", "found"),
          ("builds", "built"), ("mends", "mended"), ("counts", "counted"), ("feeds", "fed"),
          ("washes", "washed"), ("hides", "hid")]
_THINGS = ["boxes", "lamps", "boats", "baskets", "fences", "wheels", "letters", "barrels", "ropes", "kettles",
           "ladders"]


def _sentence(rng: random.Random) -> str:
    name, place = rng.choice(_NAMES).capitalize(), rng.choice(_PLACES)
    present, past = rng.choice(_VERBS)
    n, thing = rng.randint(2, 9), rng.choice(_THINGS)
    color, animal = rng.choice(_COLORS), rng.choice(_ANIMALS)
    return rng.choice([
        f"{name} {present} {n} {color} {thing} at {place}.",
        f"Yesterday {name} {past} {n} {thing} near {place}, and the {animal} watched.",
        f"The {color} {animal} sleeps at {place} while {name} {present} the {thing}.",
        f"At {place}, {name} {past} the {color} {thing} for the {animal}.",
        f"{name} asked: how many {thing} are at {place}? There are {n}.",
    ])


def make_documents(n_docs: int, seed: int = 0) -> list[str]:
    """Text-like documents with learnable structure: a title line and a few paragraphs of templated
    sentences."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        title = f"{rng.choice(_NAMES).capitalize()} and the {rng.choice(_COLORS)} {rng.choice(_ANIMALS)}"
        paragraphs = [" ".join(_sentence(rng) for _ in range(rng.randint(2, 5)))
                      for _ in range(rng.randint(1, 3))]
        docs.append("\n".join([title, *paragraphs]))
    return docs


def write_corpus(directory: Path, n_docs: int = 1500, seed: int = 0) -> Path:
    """One document per file, .txt and .md alternating."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, doc in enumerate(make_documents(n_docs, seed)):
        (directory / f"doc_{i:05d}.{'md' if i % 2 else 'txt'}").write_text(doc + "\n")
    return directory


def set_constants(source: str, constants: dict[str, str]) -> str:
    """Rewrite `NAME = value  # comment` lines of train.py, as the cockpit demo and agents do."""
    for name, value in constants.items():
        line = f"{name} = {value}"
        source, count = re.subn(rf"^{name} = [^#\n]*?(\s*#.*)?$",
                                lambda m, line=line: line + (m.group(1) or ""), source, flags=re.M)
        assert count == 1, f"expected exactly one top-level assignment of {name}, found {count}"
    return source


def write_scripts(directory: Path, constants: dict[str, str]) -> Path:
    """Copy prepare.py and a rewritten train.py into directory; returns the train.py path."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prepare.py").write_text((REPO / "prepare.py").read_text())
    train = directory / "train.py"
    train.write_text(set_constants((REPO / "train.py").read_text(), constants))
    return train


def script_env(cache: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTORESEARCH_")}
    # One torch thread: a 2-thread OpenMP pool slows down many times over when other processes
    # share the cores.
    env.update(SMOKE_ENV, AUTORESEARCH_CACHE=str(cache), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               **overrides)
    return env


def run_script(script: Path, env: dict[str, str], *args: str,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a script; stdout/stderr decoded as-is (text mode would turn train.py's `\r` into newlines)."""
    done = subprocess.run([PYTHON, str(script), *args], env=env, cwd=script.parent, capture_output=True,
                          timeout=timeout)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))


def parse_summary(stdout: str) -> dict[str, str]:
    """The `key: value` lines after the last `---` line, in order."""
    lines = stdout.split("\n")
    start = max(i for i, line in enumerate(lines) if line.strip() == "---")
    pairs = (line.split(":", 1) for line in lines[start + 1:] if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def parse_step_lines(stdout: str) -> list[dict[str, str]]:
    """Fields of every `\\r`-separated step line."""
    steps = []
    for chunk in re.split(r"[\r\n]", stdout):
        if chunk.startswith("step "):
            fields = [f.strip() for f in chunk.split("|")]
            record = {"step": fields[0].split()[1]}
            record.update(f.split(": ", 1) for f in fields[1:] if ": " in f)
            steps.append(record)
    return steps


def exec_until(script: Path, banner: str) -> dict:
    """Execute a script's top part as a module named train_defs (dataclasses need a registered module)."""
    source = script.read_text()
    assert banner in source, f"{script.name} lost its {banner.strip()!r} banner"
    sys.path.insert(0, str(script.parent))
    module = types.ModuleType("train_defs")
    module.__file__ = str(script)
    sys.modules["train_defs"] = module
    exec(compile(source.split(banner)[0], str(script), "exec"), module.__dict__)
    return module.__dict__


def untrained_bpb(train_path: Path) -> float:
    """Run train.py's setup (tokenizer, model init, optimizer, loader) and evaluate the model before
    any step."""
    namespace = exec_until(train_path, "\n# Training loop\n")
    model = namespace["model"]
    model.eval()
    with namespace["autocast_ctx"]:
        return namespace["evaluate_bpb"](model, namespace["tokenizer"], namespace["DEVICE_BATCH_SIZE"])


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "untrained-bpb":
        sys.exit("usage: python tests/corehelpers.py untrained-bpb PATH/TO/train.py")
    print(f"untrained_val_bpb: {untrained_bpb(Path(sys.argv[2])):.6f}")
