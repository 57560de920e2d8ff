"""comparability: the key a run is measured under and why two keys are not alike."""
from __future__ import annotations

import pytest

from app.comparability import comparability_key as key_of
from app.comparability import comparability_problem as problem
from app.comparability import key_difference

CPU_RUN = {"val_bpb": 1.2, "time_budget": 300, "max_seq_len": 2048, "eval_tokens": 20971520,
           "vocab_size": 8192, "device": "cpu", "device_name": "AMD EPYC 7763 64-Core Processor",
           "attention": "sdpa"}
H100_RUN = {**CPU_RUN, "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "attention": "fa3"}


def test_comparability_key_is_eval_constants_device_class_and_attention() -> None:
    assert key_of(CPU_RUN) == (
        "time_budget=300 max_seq_len=2048 eval_tokens=20971520 vocab_size=8192 | cpu | sdpa")
    assert key_of(H100_RUN) == (
        "time_budget=300 max_seq_len=2048 eval_tokens=20971520 vocab_size=8192 | NVIDIA H100 80GB HBM3 | fa3")
    other_cpu = {**CPU_RUN, "device_name": "another CPU"}
    assert key_of(other_cpu) == key_of(CPU_RUN)
    assert key_of({**H100_RUN, "time_budget": 300.0}) == key_of(H100_RUN)
    assert key_of({**H100_RUN, "device_name": "a | b"}).split(" | ")[1] == "a / b"


@pytest.mark.parametrize("broken", [
    {"attention": None}, {"attention": ""}, {"device": None}, {"device_name": None, "device": "cuda"},
    {"time_budget": None}, {"eval_tokens": "many"}, {"vocab_size": float("nan")}, {"max_seq_len": True},
])
def test_a_summary_without_every_key_has_no_comparability_key(broken: dict) -> None:
    summary = {**H100_RUN, **broken}
    summary = {k: v for k, v in summary.items() if v is not None}
    assert key_of(summary) is None
    assert "lacks the comparability keys" in problem(None, "x", 1)


def test_comparability_problem_names_what_differs() -> None:
    h100 = key_of(H100_RUN)
    a100 = key_of({**H100_RUN, "device_name": "NVIDIA A100-SXM4-80GB", "attention": "flex"})
    short = key_of({**H100_RUN, "eval_tokens": 1024})
    assert problem(h100, h100, 3) is None
    assert problem(h100, None, 3) is None  # a best from before keys were recorded
    assert problem(a100, h100, 3) == (
        "measured unlike #3 (device NVIDIA A100-SXM4-80GB != NVIDIA H100 80GB HBM3; attention flex != fa3): "
        "a new tag starts its own series")
    assert key_difference(short, h100) == "eval_tokens=1024 != 20971520"
