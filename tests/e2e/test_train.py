"""train.py: a real smoke-scale run end to end, its output contract, fast fail, and the model pieces
in-process."""
from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from corehelpers import (
    PYTHON,
    REPO,
    SMOKE_CONSTANTS,
    SMOKE_ENV,
    SUMMARY_KEYS,
    exec_until,
    parse_step_lines,
    parse_summary,
    run_script,
    script_env,
    write_corpus,
    write_scripts,
)

STEP_FIELDS = ["step", "loss", "lrm", "dt", "tok/sec", "mfu", "epoch", "remaining"]


@dataclass
class SmokeRun:
    stdout: str
    stderr: str
    returncode: int
    untrained_bpb: float
    cache: Path


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """prepare.py --source on a synthetic corpus, then a tiny train.py (TIME_BUDGET=10 s) with the
    untrained bpb measured alongside."""
    root = tmp_path_factory.mktemp("smoke")
    corpus = write_corpus(root / "corpus")
    train = write_scripts(root / "run", SMOKE_CONSTANTS)
    env = script_env(root / "cache")
    prepared = run_script(train.parent / "prepare.py", env, "--source", str(corpus), "--num-shards", "4")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    with subprocess.Popen([PYTHON, str(REPO / "tests" / "corehelpers.py"), "untrained-bpb", str(train)],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as untrained:
        # meanwhile: train.py's budget is wall time, the untrained eval is not
        trained = run_script(train, env)
        out, err = untrained.communicate(timeout=300)
    assert untrained.returncode == 0, err
    bpb = float(out.rsplit("untrained_val_bpb:", 1)[1])
    return SmokeRun(trained.stdout, trained.stderr, trained.returncode, bpb, root / "cache")


@pytest.mark.slow
def test_smoke_run_learns(smoke: SmokeRun) -> None:
    assert smoke.returncode == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]
    val_bpb = float(parse_summary(smoke.stdout)["val_bpb"])
    assert math.isfinite(val_bpb) and math.isfinite(smoke.untrained_bpb)
    assert val_bpb < smoke.untrained_bpb, (val_bpb, smoke.untrained_bpb)


@pytest.mark.slow
def test_smoke_run_summary_follows_the_contract(smoke: SmokeRun) -> None:
    summary = parse_summary(smoke.stdout)
    assert list(summary)[:len(SUMMARY_KEYS)] == SUMMARY_KEYS
    assert summary["time_budget"] == SMOKE_ENV["AUTORESEARCH_TIME_BUDGET"]
    assert summary["max_seq_len"] == SMOKE_ENV["AUTORESEARCH_MAX_SEQ_LEN"]
    assert summary["eval_tokens"] == SMOKE_ENV["AUTORESEARCH_EVAL_TOKENS"]
    assert summary["vocab_size"] == SMOKE_ENV["AUTORESEARCH_VOCAB_SIZE"]
    assert (summary["device"], summary["attention"], summary["mfu_percent"]) == ("cpu", "sdpa", "0.00")
    assert summary["depth"] == SMOKE_CONSTANTS["DEPTH"] and summary["device_name"]
    training_s = float(summary["training_seconds"])
    assert training_s >= 10 and float(summary["total_seconds"]) > training_s
    assert float(summary["peak_vram_mb"]) > 50, "peak RSS of a torch process"
    steps = int(summary["num_steps"])
    assert float(summary["total_tokens_M"]) == pytest.approx(steps * 8 * 256 / 1e6, abs=0.051)
    assert float(summary["num_params_M"]) > 0
    # every `key: value` line after `---` parses: upstream's 9 keys with `grep "^val_bpb:"` style tools
    lines = smoke.stdout.split("---\n", 1)[1].strip().split("\n")
    assert all(line.split(":", 1)[1].strip() for line in lines) and lines[0].startswith("val_bpb:          ")


@pytest.mark.slow
def test_smoke_run_step_lines_follow_the_contract(smoke: SmokeRun) -> None:
    before_summary = smoke.stdout.split("\n---\n")[0]
    step_line = before_summary.rsplit("\n", 1)[-1]
    assert step_line.startswith("\rstep 00000 (0.0%) | loss: "), \
        "all step lines on one physical line, \\r-separated"
    steps = parse_step_lines(smoke.stdout)
    assert len(steps) == int(parse_summary(smoke.stdout)["num_steps"])
    assert [s["step"] for s in steps] == [f"{i:05d}" for i in range(len(steps))]
    for record in steps:
        assert list(record)[:len(STEP_FIELDS)] == STEP_FIELDS
        assert math.isfinite(float(record["loss"]))
        assert record["dt"].endswith("ms") and record["mfu"] == "0.0%"
    assert float(steps[-1]["loss"]) < float(steps[0]["loss"])
    assert "FAIL" not in smoke.stdout


def readme_smoke_recipe() -> tuple[dict[str, str], dict[str, str]]:
    """The README's smoke-scale block: its AUTORESEARCH_* settings and the train.py constants its sed sets."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("A smoke-scale run on a 2-core CPU", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    env = dict(re.findall(r"\b((?:AUTORESEARCH|OMP)_\w+)=(\S+)", block))
    constants = dict(re.findall(r"s/\^(\w+) = \[\^#\]\*/\1 = ([^/]+?)\s*/", block))
    return env, constants


@pytest.mark.slow
def test_readme_smoke_recipe_lowers_val_bpb(tmp_path: Path) -> None:
    """The README's recipe, on the demo's offline corpus: no validation warning, and training helps."""
    from app.demo.corpus import write_corpus as write_stdlib_corpus

    settings, constants = readme_smoke_recipe()
    assert set(settings) >= {"AUTORESEARCH_VOCAB_SIZE", "AUTORESEARCH_MAX_SEQ_LEN",
                             "AUTORESEARCH_EVAL_TOKENS", "AUTORESEARCH_TIME_BUDGET"}
    assert constants.keys() == SMOKE_CONSTANTS.keys()
    settings.pop("AUTORESEARCH_CACHE")
    assert settings.pop("OMP_NUM_THREADS") == "1"  # as script_env sets it
    env = script_env(tmp_path / "cache", **settings)
    corpus = write_stdlib_corpus(tmp_path / "corpus.jsonl").path
    train = write_scripts(tmp_path / "run", constants)
    prepared = run_script(train.parent / "prepare.py", env, "--source", str(corpus), "--num-shards", "4")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    assert "WARNING" not in prepared.stdout
    helper = [PYTHON, str(REPO / "tests" / "corehelpers.py"), "untrained-bpb", str(train)]
    with subprocess.Popen(helper, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as untrained:
        trained = run_script(train, env, timeout=600)
        out, err = untrained.communicate(timeout=600)
    assert untrained.returncode == 0, err
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr
    before = float(out.rsplit("untrained_val_bpb:", 1)[1])
    after = float(parse_summary(trained.stdout)["val_bpb"])
    print(f"README smoke recipe: untrained val_bpb {before:.4f} -> trained {after:.4f}")
    assert after < before - 0.5, (before, after)


@pytest.mark.slow
def test_exploding_loss_fails_fast(tmp_path: Path, smoke: SmokeRun) -> None:
    train = write_scripts(tmp_path / "run", dict(SMOKE_CONSTANTS, UNEMBEDDING_LR='float("inf")'))
    result = run_script(train, script_env(smoke.cache))
    assert result.returncode == 1
    assert result.stdout.rstrip().endswith("FAIL") and "---" not in result.stdout


def test_batch_config_that_does_not_divide_is_a_clear_error(tmp_path: Path, smoke: SmokeRun) -> None:
    train = write_scripts(tmp_path / "run", dict(SMOKE_CONSTANTS, TOTAL_BATCH_SIZE="3000"))
    result = run_script(train, script_env(smoke.cache))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert ("TOTAL_BATCH_SIZE (3,000) must be a multiple of DEVICE_BATCH_SIZE * MAX_SEQ_LEN "
            "(8 * 256 = 2,048)") in result.stderr


def test_missing_data_names_the_command_to_run(tmp_path: Path) -> None:
    train = write_scripts(tmp_path / "run", SMOKE_CONSTANTS)
    result = run_script(train, script_env(tmp_path / "empty-cache"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"no tokenizer in {tmp_path / 'empty-cache' / 'tokenizer'}: "
        "run `python prepare.py` (or `python prepare.py --source DIR`)"]

# ---------------------------------------------------------------------------
# Model and optimizer pieces, in-process (train.py up to its Setup banner)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def defs() -> dict:
    return exec_until(REPO / "train.py", "\n# Setup: tokenizer, model, optimizer, dataloader\n")


def naive_attention(q, k, v, window):
    """Reference: softmax(qk/sqrt(d)) over keys j with 0 <= i - j <= window (window < 0: all earlier keys)."""
    T, groups = q.size(1), q.size(2) // k.size(2)
    k, v = k.repeat_interleave(groups, dim=2), v.repeat_interleave(groups, dim=2)
    scores = torch.einsum("bihd,bjhd->bhij", q, k) / math.sqrt(q.size(-1))
    distance = torch.arange(T)[:, None] - torch.arange(T)[None, :]
    allowed = (distance >= 0) & ((distance <= window) if window >= 0 else True)
    return torch.einsum("bhij,bjhd->bihd", scores.masked_fill(~allowed, float("-inf")).softmax(-1), v)


PATHS_ON_CPU = ["sdpa_attention_bthd", "flex_attention_bthd"]  # FA3 needs CUDA: bench/gpu_check.py


@pytest.mark.parametrize("path", PATHS_ON_CPU)
@pytest.mark.parametrize(("length", "window"), [
    (1, 0), (16, 0), (16, 1), (16, 5), (16, 15), (16, 16), (16, -1),
    (130, 64), (130, 128), (130, 129), (200, 100), (256, 128), (256, 256)])
@pytest.mark.parametrize("kv_heads", [4, 2])
def test_attention_paths_match_a_masked_softmax_reference(defs: dict, path: str, length: int, window: int,
                                                          kv_heads: int) -> None:
    g = torch.Generator().manual_seed(length + 1000 * window + 100 * kv_heads)
    q = torch.randn(2, length, 4, 8, generator=g)
    k, v = torch.randn(2, length, kv_heads, 8, generator=g), torch.randn(2, length, kv_heads, 8, generator=g)
    out = defs[path](q, k, v, window)
    assert out.shape == q.shape
    assert (out - naive_attention(q, k, v, window)).abs().max().item() <= 1e-5


def test_the_model_gives_the_same_loss_on_every_cpu_path(defs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """GPT.forward dispatches on ATTENTION: flex (eager) and sdpa agree through the model, S and L layers."""
    assert defs["ATTENTION"] == "sdpa", "the CPU default"
    torch.manual_seed(0)
    config = defs["GPTConfig"](sequence_len=160, vocab_size=64, n_layer=2, n_head=2, n_kv_head=1, n_embd=64)
    model = defs["GPT"](config)
    model.init_weights()
    for block in model.transformer.h:  # zero-initialised projections would hide the attention output
        torch.nn.init.normal_(block.attn.c_proj.weight, std=0.05)
    x = torch.randint(0, 64, (2, 160))
    losses = {}
    for path in ("sdpa", "flex"):
        monkeypatch.setitem(defs, "ATTENTION", path)
        with torch.no_grad():  # FlexAttention has no backward on CPU
            losses[path] = model(x, torch.roll(x, -1, dims=1), reduction="none")
    assert (losses["flex"] - losses["sdpa"]).abs().max().item() <= 1e-5


def test_window_pattern_and_value_embedding_layers(defs: dict) -> None:
    config = defs["GPTConfig"](sequence_len=64, vocab_size=32, n_layer=6, n_head=2, n_kv_head=2, n_embd=32,
                               window_pattern="SSL")
    model = defs["GPT"](config)
    assert [w for w, _ in model.window_sizes] == [32, 32, 64, 32, 32, 64]
    assert sorted(model.value_embeds.keys()) == ["1", "3", "5"]
    with pytest.raises(ValueError, match="WINDOW_PATTERN"):
        defs["GPT"](defs["GPTConfig"](window_pattern="SXL"))


def test_model_and_muon_adamw_fit_a_fixed_batch(defs: dict) -> None:
    torch.manual_seed(0)
    config = defs["GPTConfig"](sequence_len=32, vocab_size=64, n_layer=2, n_head=2, n_kv_head=2, n_embd=64)
    model = defs["GPT"](config)
    model.init_weights()
    x = torch.randint(0, 64, (4, 32))
    y = torch.roll(x, -1, dims=1)
    per_token = model(x, y, reduction="none")
    assert per_token.shape == (4 * 32,) and model(x).shape == (4, 32, 64)
    # near-uniform predictions at init
    assert per_token.mean().item() == pytest.approx(math.log(64), rel=0.01)
    optimizer = model.setup_optimizer(unembedding_lr=0.004, embedding_lr=0.6, matrix_lr=0.04,
                                      weight_decay=0.2, adam_betas=(0.8, 0.95), scalar_lr=0.5)
    assert {group["kind"] for group in optimizer.param_groups} == {"adamw", "muon"}
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for _ in range(30):
        model(x, y).backward()
        optimizer.step()
        model.zero_grad(set_to_none=True)
    assert model(x, y).item() < 0.5 * math.log(64)
    unchanged = [name for name, p in model.named_parameters() if torch.equal(p, before[name])]
    assert unchanged == []


def test_peak_flops_table_matches_device_names(defs: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    assert defs["get_peak_flops"]("NVIDIA H100 80GB HBM3") == 0.0, "never an MFU on CPU"
    monkeypatch.setitem(defs, "DEVICE_TYPE", "cuda")
    expected = {"NVIDIA H100 80GB HBM3": 989.5e12, "NVIDIA H100 PCIe": 756e12, "NVIDIA H200": 989.5e12,
                "NVIDIA A100-SXM4-80GB": 312e12, "NVIDIA A10G": 125e12, "NVIDIA L40S": 362e12,
                "NVIDIA L4": 121e12, "NVIDIA GeForce RTX 4090": 165.2e12, "Tesla T4": 0.0}
    assert {name: defs["get_peak_flops"](name) for name in expected} == expected
