"""The architecture's one-place rules, checked on the source: SQL only in app/ledger/, git
commands only in app/git.py, no log parsing in the TUI."""
from __future__ import annotations

import ast
import re
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
SQL_TEXT = re.compile(r"\b(SELECT\b.+\bFROM|INSERT\b.+\bINTO|UPDATE\b.+\bSET|DELETE\s+FROM)\b",
                      re.DOTALL)


def _modules_outside(*packages: str) -> list[Path]:
    inside = [APP / p for p in packages]
    return sorted(p for p in APP.rglob("*.py") if not any(p.is_relative_to(d) for d in inside))


def sql_uses(source: str) -> list[str]:
    """Each place `source` talks SQL: sqlite3, a connection, execute(), an SQL statement."""
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in ("sqlite3", "sqlite_utils") for n in names):
                found.append(f"{line}: imports sqlite3/sqlite_utils")
        elif isinstance(node, ast.Attribute) and node.attr in ("conn", "db", "execute", "executemany"):
            found.append(f"{line}: .{node.attr}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_TEXT.search(node.value):
            found.append(f"{line}: SQL text {node.value[:40]!r}")
    return found


def test_the_scanner_finds_sql() -> None:
    source = ('import sqlite3\nrows = ledger.conn.execute("SELECT id FROM experiments")\n'
              'x = "UPDATE experiments SET a = 1"\n')
    assert sorted(sql_uses(source)) == ["1: imports sqlite3/sqlite_utils", "2: .conn", "2: .execute",
                                        "2: SQL text 'SELECT id FROM experiments'",
                                        "3: SQL text 'UPDATE experiments SET a = 1'"]
    assert sql_uses('"""Select a run from the table; update the view."""\n') == []


def test_no_sql_outside_the_ledger_package() -> None:
    offenders = {str(p.relative_to(APP.parent)): uses for p in _modules_outside("ledger")
                 if (uses := sql_uses(p.read_text(encoding="utf-8")))}
    assert offenders == {}


def git_commands(source: str) -> list[int]:
    """Lines where `source` builds a command line starting with "git" (for subprocess)."""
    return sorted(node.lineno for node in ast.walk(ast.parse(source))
                  if isinstance(node, (ast.List, ast.Tuple)) and node.elts
                  and isinstance(node.elts[0], ast.Constant) and node.elts[0].value == "git")


def test_the_scanner_finds_git_commands() -> None:
    source = 'import subprocess\nsubprocess.run(["git", "-C", ".", "status"])\nx = ("git", "log")\n'
    assert git_commands(source) == [2, 3]
    assert git_commands('say("git is not installed")\nargs = ["gitk"]\n') == []


def test_git_runs_only_through_app_git() -> None:
    offenders = {str(p.relative_to(APP.parent)): lines for p in _modules_outside("git.py")
                 if (lines := git_commands(p.read_text(encoding="utf-8")))}
    assert offenders == {}


def test_the_tui_parses_no_logs() -> None:
    """Screens and widgets get curves and steps from the ledger or app.logs.curve, never a parser."""
    parsing = {}
    for path in sorted((APP / "tui").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == "app.logs.parse":
                parsing[str(path.relative_to(APP.parent))] = [a.name for a in node.names]
    assert parsing == {}
