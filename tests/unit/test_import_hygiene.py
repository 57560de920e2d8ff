"""The UI-free core never imports Textual (harlequin's guard): each module outside app/tui/ is
imported in a fresh interpreter, which must end without `textual` in sys.modules."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CORE_EXPECTED = ("app.ledger.store", "app.ledger.schema", "app.config", "app.logs.parse", "app.logs.textsafe",
                 "app.policy", "app.observe.tsv", "app.actions", "app.logs.tail")  # always present

PROBE = """
import importlib, json, sys
pulled = {}
for name in json.loads(sys.argv[1]):
    importlib.import_module(name)
    if "textual" in sys.modules and not pulled:
        pulled["first"] = name
print(json.dumps(pulled))
"""


def core_modules() -> list[str]:
    """Every module under app/ except the TUI package, as dotted names."""
    names = []
    for path in sorted((REPO / "app").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        if "tui" in parts:
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_core_modules_are_found() -> None:
    assert set(CORE_EXPECTED) <= set(core_modules())


def test_core_never_imports_textual() -> None:
    modules = core_modules()
    result = subprocess.run([sys.executable, "-c", PROBE, json.dumps(modules)], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    pulled = json.loads(result.stdout.strip().splitlines()[-1])
    assert pulled == {}, f"{pulled['first']} imports textual"


def test_tui_launch_module_imports_textual_lazily() -> None:
    result = subprocess.run([sys.executable, "-c", "import sys, app.tui; print('textual' in sys.modules)"],
                            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr
