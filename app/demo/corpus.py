"""An offline training corpus (the docstrings of the running interpreter's standard library),
and prepare.py's shards and tokenizer built from it.

Every Python installation carries a few MB of English prose in its standard library's
docstrings, so the demo trains on real text on any machine without a download. Reading is
deterministic: files in sorted order, docstrings in source order, the same bytes for the same
interpreter.

Usage:
    write_corpus(Path("corpus.jsonl"), max_chars=2_000_000)  # -> CorpusStats
    prepare_shards(repo, {**os.environ, "AUTORESEARCH_CACHE": str(cache)}, print)  # + prepare.py --source
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from app.errors import InfraError

MIN_DOC_CHARS = 200  # shorter docstrings ("Return x.") teach little
SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test",
                          "__pycache__", "lib2to3", "turtledemo"})
DOCTEST_PREFIXES = (">>>", "...")

DefNode = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


class CorpusError(InfraError):
    """No usable text could be found."""


@dataclass(frozen=True)
class CorpusStats:
    path: Path
    documents: int
    chars: int
    files_read: int


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(root: Path) -> list[Path]:
    """The library's .py files, sorted, without tests and third-party packages."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        found += [Path(folder) / f for f in files if f.endswith(".py")]
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def clean(docstring: str) -> str:
    """Prose only: doctest lines dropped, runs of blank lines collapsed."""
    kept = [line for line in docstring.splitlines() if not line.lstrip().startswith(DOCTEST_PREFIXES)]
    text = "\n".join(kept)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip()


def docstrings(path: Path) -> Iterator[str]:
    """The cleaned docstrings of one module, long enough to be worth training on."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return
    for node in ast.walk(tree):
        if isinstance(node, DefNode):
            text = ast.get_docstring(node, clean=True)
            if text:
                text = clean(text)
                if len(text) >= MIN_DOC_CHARS and text.isascii():
                    yield text


def write_corpus(out: Path, max_chars: int = 2_000_000, root: Path | None = None,
                 progress: Callable[[str], None] | None = None) -> CorpusStats:
    """Write up to `max_chars` of docstrings as JSON lines ({"text": ...}), atomically."""
    root = root or stdlib_dir()
    files = source_files(root)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    documents = chars = read = 0
    with open(tmp, "w", encoding="utf-8") as sink:
        for read, path in enumerate(files, start=1):
            for text in docstrings(path):
                sink.write(json.dumps({"text": text}) + "\n")
                documents += 1
                chars += len(text)
            if progress and read % 100 == 0:
                progress(f"corpus: {read}/{len(files)} modules read, {chars / 1e6:.2f}M characters")
            if chars >= max_chars:
                break
    if documents < 2:
        tmp.unlink(missing_ok=True)
        raise CorpusError(f"found {documents} docstrings of >= {MIN_DOC_CHARS} characters under "
                          f"{root}: need at least 2 (is the standard library's source installed?)")
    os.replace(tmp, out)
    return CorpusStats(out, documents, chars, read)


def prepare_shards(root: Path, env: dict[str, str], say: Callable[[str], None], num_shards: int = 4,
                   max_chars: int = 2_000_000, warm_up: bool = False) -> None:
    """Once per cache ($AUTORESEARCH_CACHE in `env`): the corpus there, then
    `prepare.py --source` on it in `root`, its output passed to `say`. `warm_up` imports torch
    meanwhile, so that a bytecode cache fills while the corpus is read."""
    cache = Path(env["AUTORESEARCH_CACHE"])
    if all((cache / "tokenizer" / name).is_file() for name in ("tokenizer.pkl", "token_bytes.pt")):
        say(f"data and tokenizer ready in {cache}")
        return
    source = cache / "corpus.jsonl"
    warm = subprocess.Popen([sys.executable, "-c", "import torch, torch._dynamo"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if warm_up else None
    try:
        if not source.is_file():
            say("corpus: reading the docstrings of Python's standard library (offline)")
            stats = write_corpus(source, max_chars, progress=say)
            say(f"corpus: {stats.documents:,} documents, {stats.chars / 1e6:.1f}M characters "
                f"from {stats.files_read} modules")
    finally:
        if warm is not None:
            warm.wait()
    proc = subprocess.Popen([sys.executable, "prepare.py", "--source", str(source), "--num-shards",
                             str(num_shards)], cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-20:]
        if line.strip() and not line.startswith(("Cache directory", "Done!")):
            say(f"prepare: {line.rstrip()}")
    if proc.wait() != 0:
        raise CorpusError("prepare.py failed:\n" + "\n".join(tail))
