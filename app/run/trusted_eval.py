"""The cockpit's own val_bpb: evaluate the final weights a run handed over, in a process of its own.

Usage (the runner starts it; app/run/trusted.py):
    python -m app.run.trusted_eval --prepare prepare.py --train train.py --weights weights.pt \
        --out result.json

Order matters. Main's prepare.py is imported and every validation token, the token byte lengths
and the eval constants are read into memory first; only then does the model's code run (the
commit's train.py above its `# Setup` banner, which defines GPTConfig and GPT). The model gets
input tokens only and must return logits; the cross-entropy, the bits-per-byte sum and the
causality probe are computed here with functions captured before any agent code ran. The data's
fingerprint and those functions are checked again at the end, which catches clumsy tampering from
the model's code (it runs in this process) but not a determined one: see README, "Trusted val_bpb".
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import sys
import time
import types
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from app.errors import UsageError

CROSS_ENTROPY = F.cross_entropy
LOG_SOFTMAX = F.log_softmax
RELIED_ON = {  # functions the metric uses: the model's code must leave them as they were
    "torch.nn.functional.cross_entropy": (F, "cross_entropy", F.cross_entropy),
    "torch.nn.functional.log_softmax": (F, "log_softmax", F.log_softmax),
    "torch.Tensor.sum": (torch.Tensor, "sum", torch.Tensor.sum),
    "torch.Tensor.item": (torch.Tensor, "item", torch.Tensor.item),
    "torch.Tensor.__getitem__": (torch.Tensor, "__getitem__", torch.Tensor.__getitem__),
    "torch.Tensor.abs": (torch.Tensor, "abs", torch.Tensor.abs),
    "torch.Tensor.max": (torch.Tensor, "max", torch.Tensor.max),
    "math.log": (math, "log", math.log),
}
SETUP_BANNER = re.compile(r"^# Setup\b", re.MULTILINE)  # train.py's model code ends above this line
MAX_BATCH_ROWS = 32  # rows of MAX_SEQ_LEN tokens per forward pass
PROBE_TOLERANCE = 1e-3  # largest change of a log-probability at or before t that counts as noise
COMPILED_PREFIX = "_orig_mod."  # state_dict keys of a torch.compile'd model


class EvalError(UsageError):
    """The weights cannot be evaluated; the message says why in one line."""


@dataclass
class EvalData:
    rows: torch.Tensor  # (N, T + 1) int64: inputs are rows[:, :-1], targets rows[:, 1:]
    token_bytes: torch.Tensor
    max_seq_len: int
    eval_tokens: int
    vocab_size: int

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.rows.numpy().tobytes())
        digest.update(self.token_bytes.numpy().tobytes())
        return digest.hexdigest()


def load_prepare(path: Path) -> types.ModuleType:
    """Main's prepare.py as the module `prepare`, so train.py's `from prepare import` finds it."""
    spec = importlib.util.spec_from_file_location("prepare", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["prepare"] = module
    spec.loader.exec_module(module)
    return module


def load_data(prepare: types.ModuleType) -> EvalData:
    """The rows prepare.evaluate_bpb would score (EVAL_TOKENS // MAX_SEQ_LEN of them), in memory."""
    tokenizer = prepare.Tokenizer.from_directory()
    seq_len, eval_tokens = int(prepare.MAX_SEQ_LEN), int(prepare.EVAL_TOKENS)
    wanted = max(1, eval_tokens // seq_len)
    batch = min(wanted, MAX_BATCH_ROWS)
    loader = prepare.make_dataloader(tokenizer, batch, seq_len, "val", device="cpu")
    parts, have = [], 0
    while have < wanted:
        x, y, _ = next(loader)
        take = min(batch, wanted - have)
        parts.append(torch.cat([x[:take], y[:take, -1:]], dim=1).clone())
        have += take
    return EvalData(torch.cat(parts), prepare.get_token_bytes(device="cpu").clone(), seq_len,
                    wanted * seq_len, tokenizer.get_vocab_size())


def load_model(train_path: Path, weights_path: Path, device: torch.device) -> torch.nn.Module:
    """GPT(GPTConfig(**config)) from the commit's train.py, with the handed-over weights."""
    source = train_path.read_text(encoding="utf-8")
    banner = SETUP_BANNER.search(source)
    if banner is None:
        raise EvalError("train.py has no `# Setup` banner: the cockpit builds the model from the "
                        "code above it (GPTConfig, GPT)")
    module = types.ModuleType("train_model")
    module.__file__ = str(train_path)
    sys.modules["train_model"] = module
    exec(compile(source[:banner.start()], str(train_path), "exec"), module.__dict__)
    for name in ("GPTConfig", "GPT"):
        if not callable(module.__dict__.get(name)):
            raise EvalError(f"train.py defines no {name} above its `# Setup` banner")
    try:
        payload = torch.load(weights_path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise EvalError("train.py handed over no weights (COCKPIT_WEIGHTS_OUT): keep the "
                        "hand-over lines at the end of train.py") from None
    except Exception as exc:
        raise EvalError(f"the handed-over weights cannot be read: {exc}") from exc
    if not (isinstance(payload, dict) and isinstance(payload.get("config"), dict)
            and isinstance(payload.get("model"), dict)):
        raise EvalError("the handed-over file is not {'config': dict, 'model': state_dict}")
    state = {str(k).removeprefix(COMPILED_PREFIX): v for k, v in payload["model"].items()}
    with torch.device(device):
        model = module.GPT(module.GPTConfig(**payload["config"]))
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def autocast_for(device: torch.device) -> Any:
    """train.py's precision: bf16 autocast on CUDA, fp32 elsewhere."""
    if device.type == "cuda":
        return torch.amp.autocast(device_type="cuda", dtype=torch.bfloat16)
    return nullcontext()


def logits_of(model: torch.nn.Module, inputs: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The model's next-token logits for `inputs`, as float32; it sees no targets."""
    with torch.no_grad(), autocast_for(inputs.device):
        logits = model(inputs)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 3 or \
            tuple(logits.shape[:2]) != tuple(inputs.shape) or logits.size(-1) < vocab_size:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise EvalError(f"model(inputs) must return logits of shape (B, T, >= {vocab_size}) for "
                        f"inputs {tuple(inputs.shape)}, got {shape}")
    return logits.float()


def probe_rows(inputs: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, list[int]]:
    """`inputs` with each row's tokens after a position t_i replaced by another row's (natural
    text, same shape as an eval batch); t_i spread over the sequence."""
    rows, seq = inputs.shape
    cuts = [round(i * (seq - 2) / max(1, rows - 1)) for i in range(rows)]
    probe = inputs.clone()
    for i, t in enumerate(cuts):
        donor = inputs[(i + 1) % rows] if rows > 1 else inputs[0].flip(0)
        probe[i, t + 1:] = donor[t + 1:]
        if probe[i, t + 1] == inputs[i, t + 1]:
            probe[i, t + 1] = (inputs[i, t + 1] + 1) % vocab_size
    return probe, cuts


def causality_gap(model: torch.nn.Module, inputs: torch.Tensor, vocab_size: int) -> float:
    """Largest change of a log-probability at a position <= t when the tokens after t change;
    0 for a causal model (up to numerical noise)."""
    probe, cuts = probe_rows(inputs, vocab_size)
    before = LOG_SOFTMAX(logits_of(model, inputs, vocab_size), dim=-1)
    after = LOG_SOFTMAX(logits_of(model, probe, vocab_size), dim=-1)
    gap = 0.0
    for i, t in enumerate(cuts):
        gap = max(gap, (before[i, :t + 1] - after[i, :t + 1]).abs().max().item())
    return gap if math.isfinite(gap) else math.inf


def bits_per_byte(model: torch.nn.Module, data: EvalData, device: torch.device) -> float:
    """prepare.evaluate_bpb's formula on logits: summed nats over summed target bytes, special
    tokens (0 bytes) excluded from both."""
    token_bytes = data.token_bytes.to(device)
    total_nats, total_bytes = 0.0, 0
    for start in range(0, data.rows.size(0), MAX_BATCH_ROWS):
        rows = data.rows[start:start + MAX_BATCH_ROWS].to(device)
        inputs, targets = rows[:, :-1], rows[:, 1:].reshape(-1)
        logits = logits_of(model, inputs, data.vocab_size)
        nats = CROSS_ENTROPY(logits.reshape(-1, logits.size(-1)), targets, reduction="none")
        nbytes = token_bytes[targets]
        total_nats += (nats.double() * (nbytes > 0)).sum().item()
        total_bytes += int(nbytes.sum().item())
    if total_bytes <= 0:
        raise EvalError("the validation rows hold no bytes")
    return total_nats / (math.log(2) * total_bytes)


def tampered() -> list[str]:
    return [name for name, (owner, attr, original) in RELIED_ON.items()
            if getattr(owner, attr, None) is not original]


def evaluate(prepare_path: Path, train_path: Path, weights_path: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    prepare = load_prepare(prepare_path)
    data = load_data(prepare)
    fingerprint = data.fingerprint()
    device = torch.device(prepare.default_device())
    print(f"data: {data.rows.size(0)} rows x {data.max_seq_len} tokens from main's validation "
          f"shard in {time.perf_counter() - t0:.1f} s", flush=True)
    t1 = time.perf_counter()
    model = load_model(train_path, weights_path, device)
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters on {device} in "
          f"{time.perf_counter() - t1:.1f} s", flush=True)
    t2 = time.perf_counter()
    first = data.rows[:MAX_BATCH_ROWS, :-1].to(device)
    gap = causality_gap(model, first, data.vocab_size)
    causal = gap <= PROBE_TOLERANCE
    print(f"causality probe: largest change before the cut {gap:.3g} "
          f"({'causal' if causal else 'LOOKS AHEAD'})", flush=True)
    t3 = time.perf_counter()
    val_bpb = bits_per_byte(model, data, device)
    t4 = time.perf_counter()
    print(f"val_bpb: {val_bpb:.6f} in {t4 - t3:.1f} s", flush=True)
    changed = tampered()
    if changed:
        raise EvalError(f"the model's code replaced what the metric relies on: {', '.join(changed)}")
    if data.fingerprint() != fingerprint:
        raise EvalError("the validation data changed in memory during the evaluation")
    return {"val_bpb": val_bpb, "causal": causal, "probe_gap": gap,
            "eval_tokens": data.eval_tokens, "max_seq_len": data.max_seq_len,
            "vocab_size": data.vocab_size, "device": device.type,
            "seconds": {"data": round(t1 - t0, 3), "model": round(t2 - t1, 3),
                        "probe": round(t3 - t2, 3), "eval": round(t4 - t3, 3)}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prepare", type=Path, required=True, help="main's prepare.py")
    parser.add_argument("--train", type=Path, required=True, help="the measured commit's train.py")
    parser.add_argument("--weights", type=Path, required=True, help="what train.py handed over")
    parser.add_argument("--out", type=Path, required=True, help="result JSON")
    args = parser.parse_args(argv)
    try:
        result = evaluate(args.prepare, args.train, args.weights)
        status = 0
    except EvalError as exc:
        result, status = {"error": str(exc)}, 1
    except SystemExit as exc:  # prepare.py's one-line errors; or the model's code called exit()
        result, status = {"error": f"exited during the evaluation: {exc}"}, 1
    except Exception as exc:
        import traceback

        traceback.print_exc()
        result, status = {"error": f"{type(exc).__name__}: {exc}"}, 1
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
