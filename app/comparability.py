"""Comparability: a run is compared only with runs measured like it (DESIGN.md, "Comparability key").

The key is the effective eval constants, the device class (the GPU model on CUDA, else cpu/mps) and the
attention path, all read from train.py's summary. Pure functions; app/policy.py's adjust() applies the
rule, the ledger stores each run's key.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

EVAL_CONSTANTS = ("time_budget", "max_seq_len", "eval_tokens", "vocab_size")  # summary keys behind val_bpb
_KEY_PARTS = ("eval", "device", "attention")  # the parts of a comparability key, in order
_KEY_SEPARATOR = " | "


def comparability_key(summary: Mapping[str, object]) -> str | None:
    """What a run was measured under: the effective eval constants, the device class (the GPU model on
    CUDA, else cpu/mps) and the attention path, as one text; None when the summary lacks any of them."""
    constants = []
    for name in EVAL_CONSTANTS:
        value = summary.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return None
        constants.append(f"{name}={int(value) if float(value).is_integer() else value}")
    device = _key_text(summary.get("device"))
    device_class = _key_text(summary.get("device_name")) if device == "cuda" else device
    attention = _key_text(summary.get("attention"))
    if not device_class or not attention:
        return None
    return _KEY_SEPARATOR.join((" ".join(constants), device_class, attention))


def _key_text(value: object) -> str:
    return " ".join(str(value).replace("|", "/").split()) if isinstance(value, str) else ""


def key_difference(key: str, other: str) -> str:
    """The parts in which two comparability keys differ, e.g. `device NVIDIA A100 != NVIDIA H100`."""
    mine, theirs = key.split(_KEY_SEPARATOR), other.split(_KEY_SEPARATOR)
    if len(mine) != len(_KEY_PARTS) or len(theirs) != len(_KEY_PARTS):
        return f"{key} != {other}"
    differences = []
    for part, a, b in zip(_KEY_PARTS, mine, theirs):
        if part == "eval":
            pairs = zip(a.split(), b.split())
            differences += [f"{x} != {y.split('=', 1)[-1]}" for x, y in pairs if x != y]
        elif a != b:
            differences.append(f"{part} {a} != {b}")
    return "; ".join(differences)


def comparability_problem(key: str | None, reference_key: str | None, reference_id: int | None) -> str | None:
    """Why a run cannot be compared with its reference (the branch best, else the tag's first keep);
    None when it can. A reference measured before keys were recorded (None) is not held against it."""
    if key is None:
        return ("the summary lacks the comparability keys (eval constants, device, device_name on CUDA, "
                "attention)")
    if reference_key is None or reference_key == key:
        return None
    return (f"measured unlike #{reference_id} ({key_difference(key, reference_key)}): "
            "a new tag starts its own series")
