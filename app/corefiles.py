"""Where the core scripts and the TUI styles are: the repository root in a checkout, app/ in a wheel."""
from __future__ import annotations

from pathlib import Path

CORE_FILES = ("prepare.py", "train.py", "modal_train.py", "program.md")


def core_file(name: str) -> Path:
    """The path of one core script (prepare.py, train.py, modal_train.py, program.md)."""
    if name not in CORE_FILES:
        raise ValueError(f"{name!r} is not one of the core files {CORE_FILES}")
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / name, package / "core" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{name} is missing from this install (looked in {package.parent} "
                            f"and {package / 'core'})")


def styles_dir() -> Path:
    """The folder of the TUI's .tcss files: styles/ in a checkout, app/styles/ in a wheel."""
    package = Path(__file__).resolve().parent
    for candidate in (package.parent / "styles", package / "styles"):
        if (candidate / "app.tcss").is_file():
            return candidate
    raise FileNotFoundError(f"the cockpit's styles are missing (looked in {package.parent / 'styles'} "
                            f"and {package / 'styles'})")
