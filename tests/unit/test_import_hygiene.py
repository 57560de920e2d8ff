"""The house rules on imports and size, checked on the source tree:

- the UI-free core never imports Textual or Rich (harlequin's guard): each module outside app/tui/
  is imported in a fresh interpreter, which must end without either in sys.modules;
- no import cycle between app modules, top level or inside functions (`if TYPE_CHECKING:` imports
  excluded: they never run);
- no module in app/ over MAX_LINES lines.
"""
from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CORE_EXPECTED = ("app.ledger.store", "app.ledger.schema", "app.config", "app.logs.parse", "app.logs.textsafe",
                 "app.logs.index", "app.logs.tail", "app.policy", "app.observe.tsv", "app.observe.watch",
                 "app.actions", "app.cli", "app.run.runner", "app.agents.panes", "app.agents.lifecycle",
                 "app.git")  # always present
UI_LIBRARIES = ("textual", "rich")
MAX_LINES = 400

PROBE = """
import importlib, json, sys
pulled = {}
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    for library in json.loads(sys.argv[2]):
        if library in sys.modules and library not in pulled:
            pulled[library] = name
print(json.dumps(pulled))
"""


def app_modules() -> dict[str, Path]:
    """Every module under app/, by dotted name (a package by its own name)."""
    modules = {}
    for path in sorted((REPO / "app").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def core_modules() -> list[str]:
    """Every module under app/ except the TUI package."""
    return [name for name in app_modules() if not name.startswith("app.tui")]


def test_core_modules_are_found() -> None:
    assert set(CORE_EXPECTED) <= set(core_modules())


def test_core_imports_neither_textual_nor_rich() -> None:
    modules = core_modules()
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(modules), json.dumps(UI_LIBRARIES)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    pulled = json.loads(result.stdout.strip().splitlines()[-1])
    assert pulled == {}, "; ".join(f"{module} imports {library}" for library, module in pulled.items())


def test_tui_launch_module_imports_textual_lazily() -> None:
    result = subprocess.run([sys.executable, "-c", "import sys, app.tui; print('textual' in sys.modules)"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


# ---------------------------------------------------------------------------
# Import cycles

def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes under `if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`) blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return skipped


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The app modules `path` imports anywhere in its body (functions included), by dotted name."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:  # `from app.x import y`: y may be a module or a name in app.x
                full = f"{node.module}.{alias.name}"
                found.add(full if full in modules else node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    """Module -> the app modules it imports; a submodule importing its own package (run first
    anyway) is not an edge."""
    modules = app_modules()
    return {name: {dep for dep in imports_of(path, modules)
                   if dep != name and not name.startswith(dep + ".")}
            for name, path in modules.items()}


def test_the_cycle_checker_sees_imports_inside_functions_and_skips_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nfrom app import git\nif TYPE_CHECKING:\n"
                      "    from app.tui.app import CockpitApp\n"
                      "def f():\n    from app.ledger.store import Ledger\n    import app.policy\n")
    assert imports_of(source, app_modules()) == {"app.git", "app.ledger.store", "app.policy"}


def test_no_import_cycles() -> None:
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as exc:
        pytest.fail("import cycle: " + " -> ".join(exc.args[1]))


# ---------------------------------------------------------------------------
# Size

def test_no_module_over_the_line_limit() -> None:
    long = {str(path.relative_to(REPO)): count for path in app_modules().values()
            if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines (split them): {long}"
