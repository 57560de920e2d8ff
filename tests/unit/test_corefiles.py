"""The core scripts are found in a checkout and inside a built wheel."""
from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from app.corefiles import CORE_FILES, core_file, styles_dir

ROOT = Path(__file__).resolve().parents[2]


def test_checkout_finds_the_repository_copies() -> None:
    for name in CORE_FILES:
        assert core_file(name) == ROOT / name
    with pytest.raises(ValueError):
        core_file("setup.py")
    assert styles_dir() == ROOT / "styles"


def test_wheel_carries_core_scripts_and_styles(tmp_path: Path) -> None:
    builder = ["uv", "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)]
    built = subprocess.run(builder, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next(tmp_path.glob("*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in CORE_FILES:
        assert f"app/core/{name}" in names
    assert any(n.startswith("app/styles/") and n.endswith(".tcss") for n in names)
