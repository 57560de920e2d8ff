"""Settings: defaults < `[tool.cockpit]` in the main worktree's pyproject.toml <
`.autoresearch/config.toml` < command-line flags."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from app.errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


NOTIFY_EVENTS = ("new-best", "review", "waiting", "stuck", "crash-streak", "supervisor")


class ConfigError(UsageError):
    """A settings file that cannot be read or holds an invalid value."""


@dataclass(frozen=True)
class Settings:
    backend: str = "local"            # local | modal
    review: str = "auto"              # auto | gate
    review_timeout_s: float = 1800.0  # gate: fall back to the automatic rule after this long
    min_delta: float = 0.0            # keep only if val_bpb beats the branch best by more than this
    k_sigma: float = 2.0              # ... or by k times the noise measured from repeated runs
    near_miss: float = 0.002          # discards this close to the best are near-misses
    contended_frac: float = 0.25      # num_steps or tok/s this far below the baseline -> contended
    crash_streak: int = 3             # consecutive crashes of one agent -> stop and rethink
    timeout_factor: float = 2.0       # hard timeout = factor x the effective time budget
    kill_grace_s: float = 5.0         # TERM, then KILL after this long
    implausible_ratio: float = 0.8    # val_bpb below ratio x the series baseline waits for a human
    agent_command: str = "claude"     # what `cockpit agent new` starts in a pane
    modal_gpu: str = "H100"
    tag: str = ""                     # default run tag; empty -> derived from the branch
    train_env: dict[str, str] = field(default_factory=dict)  # AUTORESEARCH_* for every train.py run
    gpus: str | tuple[str, ...] = "auto"  # "auto" (NVML) | ["0", "1"] (indices/UUIDs) | [] (no pool)
    gpus_per_run: int = 1             # devices leased to each local run
    modal_max_concurrent: int = 0     # Modal runs of this repository in flight at once; 0 = no cap
    trusted_eval: str = "keeps"       # keeps | always | off: which runs the cockpit re-measures itself
    metric_tolerance: float = 0.001   # printed vs measured val_bpb further apart -> metric-mismatch
    notify: tuple[str, ...] = ()      # apprise URLs the supervisor sends to ("ntfys://topic", ...)
    notify_events: tuple[str, ...] = NOTIFY_EVENTS  # which attention kinds are sent
    attention_prompts: tuple[str, ...] = ()  # regexes of agent prompts, beside the built-in ones
    waiting_idle_s: float = 20.0      # a pane unchanged this long and showing a prompt waits for input
    stuck_factor: float = 3.0         # no experiment for this many time budgets -> agent stuck
    bell: bool = False                # the TUI rings the terminal bell when attention grows

    def with_overrides(self, **values: Any) -> Settings:
        return replace(self, **{k: v for k, v in values.items() if v is not None})


_CHOICES = {"backend": ("local", "modal"), "review": ("auto", "gate"),
            "trusted_eval": ("keeps", "always", "off")}
_MINIMUM = {"gpus_per_run": 1, "modal_max_concurrent": 0}


def _gpus(value: Any) -> str | tuple[str, ...]:
    """`"auto"`, or a list of distinct device indices / UUIDs (numbers or strings)."""
    if value == "auto":
        return "auto"
    if not isinstance(value, list):
        raise TypeError('gpus must be "auto" or a list of device indices or UUIDs')
    out: list[str] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise TypeError(f"{item!r} is not a device index or UUID")
        text = str(item).strip()
        if not text or (isinstance(item, int) and item < 0) or "," in text or not text.isprintable():
            raise TypeError(f"{item!r} is not a device index or UUID")
        if text in out:
            raise TypeError(f"device {text!r} is listed twice")
        out.append(text)
    return tuple(out)


_DAY = 86400.0
# Numbers that must lie in [low, high] (finite): a duration of `inf` or `nan` (valid TOML) would
# make a wait endless or a comparison always false.
BOUNDS: dict[str, tuple[float, float]] = {
    "review_timeout_s": (0.0, 7 * _DAY),
    "kill_grace_s": (0.0, 600.0),
    "timeout_factor": (0.01, 100.0),
    "min_delta": (0.0, 10.0),
    "k_sigma": (0.0, 100.0),
    "near_miss": (0.0, 10.0),
    "contended_frac": (0.0, 1.0),
    "crash_streak": (1, 1000),
    "implausible_ratio": (0.01, 1.0),
    "metric_tolerance": (0.0, 1.0),
}


def check_bounds(name: str, value: Any, source: object = "settings") -> None:
    """ConfigError unless `value` is finite and within BOUNDS[name] (if it has bounds)."""
    if name not in BOUNDS:
        return
    low, high = BOUNDS[name]
    if not isinstance(value, (int, float)) or not (low <= value <= high):  # NaN fails too
        raise ConfigError(f"{source}: {name} = {value!r} must be a finite number "
                          f"between {low:g} and {high:g}")


def _from_mapping(settings: Settings, table: dict[str, Any], source: Path) -> Settings:
    types = {f.name: type(getattr(settings, f.name)) for f in fields(Settings)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in types:
            raise ConfigError(f"{source}: unknown setting {key!r} in [tool.cockpit]")
        try:
            values[name] = _gpus(value) if name == "gpus" else _typed(types[name], value)
        except (TypeError, ValueError) as exc:
            why = f"invalid: {exc}" if name == "gpus" else f"not a valid {types[name].__name__}"
            raise ConfigError(f"{source}: setting {key!r} = {value!r} is {why}") from exc
        if name in _MINIMUM and values[name] < _MINIMUM[name]:
            raise ConfigError(f"{source}: {key} must be at least {_MINIMUM[name]}")
        if name in _CHOICES and values[name] not in _CHOICES[name]:
            raise ConfigError(f"{source}: {key} must be one of {', '.join(_CHOICES[name])}")
        check_bounds(name, values[name], source)
        unknown = set(values[name]) - set(NOTIFY_EVENTS) if name == "notify_events" else set()
        if unknown:
            raise ConfigError(f"{source}: notify_events: unknown {', '.join(sorted(unknown))} "
                              f"(known: {', '.join(NOTIFY_EVENTS)})")
    return replace(settings, **values)


def _typed(kind: type, value: Any) -> Any:
    """`value` as a setting of type `kind`; TypeError when TOML holds another kind of value
    (a list where a command line belongs would otherwise become its Python repr)."""
    def scalar(v: Any) -> bool:
        return isinstance(v, (str, int, float)) and not isinstance(v, bool)

    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{value!r} is not true or false")
        return value
    if kind is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError(f"{value!r} is not a list of strings")
        return tuple(value)
    if kind is dict:
        if not isinstance(value, dict) or not all(scalar(v) for v in value.values()):
            raise TypeError(f"{value!r} is not a table of strings and numbers")
        return {str(k): str(v) for k, v in value.items()}
    if not scalar(value) or (kind is str) != isinstance(value, str) or (
            kind is int and not isinstance(value, int)):
        raise TypeError(f"{value!r} is not a {kind.__name__}")
    return kind(value)


def load_settings(main_worktree: Path | None) -> Settings:
    settings = Settings()
    if main_worktree is None:
        return settings
    for path, table_path in ((main_worktree / "pyproject.toml", ("tool", "cockpit")),
                             (main_worktree / ".autoresearch" / "config.toml", ())):
        if not path.is_file():
            continue
        try:
            table: Any = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from exc
        for key in table_path:
            table = table.get(key, {}) if isinstance(table, dict) else None
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: [{'.'.join(table_path)}] is not a table")
        settings = _from_mapping(settings, table, path)
    return settings
