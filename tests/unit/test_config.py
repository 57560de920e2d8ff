"""Settings: defaults, [tool.cockpit], .autoresearch/config.toml, bad values."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.config import ConfigError, Settings, load_settings


def test_defaults_without_files(tmp_path: Path) -> None:
    assert load_settings(tmp_path) == Settings()
    assert load_settings(None).review == "auto"


def test_pyproject_then_local_overrides(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.cockpit]\nreview = "gate"\nk-sigma = 3\nmin_delta = 0.001\n'
        '[tool.cockpit.train_env]\nAUTORESEARCH_TIME_BUDGET = 20\n')
    (tmp_path / ".autoresearch").mkdir()
    (tmp_path / ".autoresearch" / "config.toml").write_text('backend = "modal"\nmin_delta = 0.002\n')
    settings = load_settings(tmp_path)
    assert settings.review == "gate" and settings.k_sigma == 3.0 and settings.backend == "modal"
    assert settings.min_delta == 0.002
    assert settings.train_env == {"AUTORESEARCH_TIME_BUDGET": "20"}
    assert settings.with_overrides(review="auto", backend=None).review == "auto"


@pytest.mark.parametrize("text, message", [
    ('[tool.cockpit]\nreview = "sometimes"\n', "review must be one of auto, gate"),
    ('[tool.cockpit]\nspeed = 3\n', "unknown setting 'speed'"),
    ('[tool.cockpit]\nk_sigma = "two"\n', "'k_sigma' = 'two' is not a valid float"),
    ('[tool.cockpit]\ntrain_env = 3\n', "'train_env' = 3 is not a valid dict"),
    ('[tool.cockpit]\nagent_command = ["claude", "-p"]\n',
     "'agent_command' = ['claude', '-p'] is not a valid str"),
    ('[tool.cockpit]\nmodal_gpu = 100\n', "'modal_gpu' = 100 is not a valid str"),
    ('[tool.cockpit]\ncrash_streak = 2.5\n', "'crash_streak' = 2.5 is not a valid int"),
    ('[tool.cockpit]\nmin_delta = true\n', "'min_delta' = True is not a valid float"),
    ('[tool.cockpit.train_env]\nX = [1]\n', "'train_env' = {'X': [1]} is not a valid dict"),
    ('[tool]\ncockpit = 3\n', "[tool.cockpit] is not a table"),
    ('tool = "x"\n', "[tool.cockpit] is not a table"),
    ('[tool.cockpit\n', "pyproject.toml"),
])
def test_bad_settings_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(tmp_path)
