"""train.py's hyperparameter constants: read them, edit them in place, propose mutations.

An edit rewrites one `NAME = value  # comment` line and nothing else (the comment and its
spacing stay), then checks the file still parses and the constant now reads the new value, so
every experiment is a small local diff of the kind an LLM agent would make.

Usage:
    constants = read_constants(source)                    # {"DEPTH": Constant(...), ...}
    for move in propose_moves(constants, max_seq_len=256): ...
    source = apply_changes(source, move.changes)
"""
from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.errors import UsageError

LEARNING_RATES = {  # constant -> what it drives
    "EMBEDDING_LR": "token embeddings",
    "UNEMBEDDING_LR": "the lm_head",
    "MATRIX_LR": "the Muon matrices",
    "SCALAR_LR": "per-layer scalars",
}
WINDOW_PATTERNS = ("L", "SL", "SSL", "SSSL", "SSSSL")
SEARCHED = ("DEPTH", "ASPECT_RATIO", "HEAD_DIM", "WINDOW_PATTERN", "TOTAL_BATCH_SIZE",
            "DEVICE_BATCH_SIZE", *LEARNING_RATES, "WEIGHT_DECAY", "ADAM_BETAS", "WARMUP_RATIO",
            "WARMDOWN_RATIO", "FINAL_LR_FRAC")
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Pow: operator.pow}


class MutationError(UsageError):
    """An edit that cannot be made safely; train.py is left as it was."""


@dataclass(frozen=True)
class Constant:
    name: str
    expr: str  # the value's source text
    value: Any  # int, float, str, bool or a tuple of them
    line: int  # 1-based


@dataclass(frozen=True)
class Move:
    """One experiment's edit: new values for one or more constants, and why."""

    changes: dict[str, Any]
    description: str
    hypothesis: str
    category: str
    keys: tuple[str, ...] = field(default_factory=tuple)  # "NAME:up" / "NAME:down" / "NAME=value"


# ---------------------------------------------------------------------------
# Reading and editing

def _evaluate(node: ast.AST) -> Any:
    """Literals and arithmetic on them (`2**19`, `8 * 256`, `(0.8, 0.95)`); ValueError otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.Tuple):
        return tuple(_evaluate(item) for item in node.elts)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        return _BINARY[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError("not a literal")


def read_constants(source: str) -> dict[str, Constant]:
    """Top-level one-line `NAME = <literal>` assignments of ALL_CAPS names, in file order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MutationError(f"train.py does not parse: {exc}") from exc
    lines = source.splitlines()
    found: dict[str, Constant] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper()
                and node.lineno == node.end_lineno):
            continue
        try:
            value = _evaluate(node.value)
        except (ValueError, TypeError, ArithmeticError):
            continue
        name = node.targets[0].id
        line = lines[node.lineno - 1].encode()  # col offsets count UTF-8 bytes
        expr = line[node.value.col_offset:node.value.end_col_offset].decode()
        found[name] = Constant(name, expr, value, node.lineno)
    return found


def format_value(value: Any, old_expr: str = "") -> str:
    """Source text for a value, in the style of the expression it replaces."""
    if isinstance(value, (bool, str)):
        return repr(value) if isinstance(value, bool) else '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        return "(" + ", ".join(format_value(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, int):
        if "**" in old_expr and value > 0 and value & (value - 1) == 0:
            return f"2**{value.bit_length() - 1}"
        parts = [p.strip() for p in old_expr.split("*")] if old_expr.count("*") == 1 else []
        if len(parts) == 2 and parts[1].isdigit() and int(parts[1]) and value % int(parts[1]) == 0:
            return f"{value // int(parts[1])} * {parts[1]}"
        return str(value)
    if isinstance(value, float):
        text = f"{value:.6g}"
        return text if any(c in text for c in ".en") else text + ".0"
    raise MutationError(f"cannot write a {type(value).__name__} constant")


def apply_changes(source: str, changes: Mapping[str, Any]) -> str:
    """Rewrite each constant's line in place; the result parses and reads the new values."""
    lines = source.splitlines(keepends=True)
    constants = read_constants(source)
    for name, value in changes.items():
        constant = constants.get(name)
        if constant is None:
            raise MutationError(f"train.py has no one-line literal constant {name}")
        old = lines[constant.line - 1]
        prefix = f"{name} = {constant.expr}"
        if not old.startswith(prefix):
            raise MutationError(f"unexpected layout of the {name} line: {old.strip()!r}")
        head = f"{name} = {format_value(value, constant.expr)}"
        lines[constant.line - 1] = _keep_comment_column(old, prefix, head)
    new_source = "".join(lines)
    after = read_constants(new_source)
    for name, value in changes.items():
        if name not in after or after[name].value != value:
            raise MutationError(f"editing {name} did not give {value!r}")
    return new_source


def _keep_comment_column(old: str, prefix: str, head: str) -> str:
    """`head` + the old line's rest, its `# comment` kept in its column where it fits (upstream
    aligns them)."""
    rest = old[len(prefix):]
    comment = rest.lstrip(" ")
    if not comment.startswith("#"):
        return head + rest
    gap = len(rest) - len(comment)
    return head + " " * max(min(gap, 2), len(prefix) + gap - len(head)) + comment


def values_of(constants: Mapping[str, Constant]) -> dict[str, Any]:
    return {name: c.value for name, c in constants.items() if name in SEARCHED}


def config_key(values: Mapping[str, Any]) -> tuple:
    """What identifies a configuration: the searched constants and their values."""
    return tuple(sorted((k, repr(v)) for k, v in values.items() if k in SEARCHED))


def changes_between(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Searched constants whose value differs from `before` to `after`."""
    return {k: v for k, v in after.items() if k in SEARCHED and k in before and before[k] != v}


def describe(before: Mapping[str, Any], changes: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {format_value(before[k])} -> {format_value(v)}" for k, v in changes.items())


def move_in_words(key: str) -> str:
    """A move key ("MATRIX_LR:up", "WINDOW_PATTERN=SL", "combine:3+5") in words."""
    name, sep, rest = key.partition(":") if ":" in key else key.partition("=")
    if name == "combine":
        return f"combining #{rest.replace('+', ' and #')}"
    if sep == ":":
        return f"{'raising' if rest == 'up' else 'lowering'} {name}"
    return f"{name} back at main's value" if rest == "baseline" else f"{name} = {rest}"


# ---------------------------------------------------------------------------
# Proposals

def _round(value: float) -> float:
    return float(f"{value:.4g}")


def _scaled(values: Mapping[str, Any], name: str, factor: float, category: str,
            why_up: str, why_down: str) -> list[Move]:
    current = values[name]
    if not isinstance(current, (int, float)) or isinstance(current, bool) or current <= 0:
        return []
    out = []
    for direction, f, why in (("up", factor, why_up), ("down", 1 / factor, why_down)):
        new = _round(current * f) if isinstance(current, float) else max(1, round(current * f))
        if new != current:
            out.append(_move(values, {name: new}, why, category, f"{name}:{direction}"))
    return out


def _move(values: Mapping[str, Any], changes: dict[str, Any], hypothesis: str, category: str,
          *keys: str) -> Move:
    return Move(changes, describe(values, changes), hypothesis, category, keys)


def _batch_moves(values: Mapping[str, Any], max_seq_len: int) -> list[Move]:
    total, device = values.get("TOTAL_BATCH_SIZE"), values.get("DEVICE_BATCH_SIZE")
    if not isinstance(total, int) or not isinstance(device, int) or total <= 0 or device <= 0:
        return []
    out = [_move(values, {"TOTAL_BATCH_SIZE": total * 2},
                 "a bigger batch gives less noisy gradients per step", "batch", "TOTAL_BATCH_SIZE:up")]
    half = total // 2
    if total % 2 == 0:
        new_device = device
        while new_device > 1 and half % (new_device * max_seq_len):
            new_device //= 2
        if half % (new_device * max_seq_len) == 0:
            changes: dict[str, Any] = {"TOTAL_BATCH_SIZE": half}
            if new_device != device:
                changes["DEVICE_BATCH_SIZE"] = new_device
            out.append(_move(values, changes, "a smaller batch gives more optimizer steps in the "
                             "fixed time budget", "batch", "TOTAL_BATCH_SIZE:down"))
    return out


def propose_moves(values: Mapping[str, Any], *, bold: bool = True,
                  max_seq_len: int = 2048) -> list[Move]:
    """Every single-idea mutation of the current values; `bold` takes bigger steps."""
    lr_factor, step = (2.0, 0.2) if bold else (1.5, 0.1)
    moves: list[Move] = []
    for name, what in LEARNING_RATES.items():
        if name in values:
            moves += _scaled(values, name, lr_factor, "lr",
                             f"a higher learning rate for {what} may learn faster in the short budget",
                             f"a lower learning rate for {what} may train more stably")
    if "WEIGHT_DECAY" in values:
        moves += _scaled(values, "WEIGHT_DECAY", 2.0, "regularization",
                         "more weight decay may regularize better",
                         "less weight decay may let a short run fit faster")
    depth = values.get("DEPTH")
    if isinstance(depth, int):
        moves.append(_move(values, {"DEPTH": depth + 1}, "a deeper model may be worth its slower steps",
                           "architecture", "DEPTH:up"))
        if depth > 1:
            moves.append(_move(values, {"DEPTH": depth - 1}, "a shallower model takes more steps in "
                               "the budget", "architecture", "DEPTH:down"))
    if isinstance(values.get("ASPECT_RATIO"), int):
        moves += _scaled(values, "ASPECT_RATIO", 2.0 if bold else 1.5, "architecture",
                         "a wider model may learn more per step",
                         "a narrower model takes more steps in the budget")
    head = values.get("HEAD_DIM")
    if isinstance(head, int):
        if head >= 32:
            moves.append(_move(values, {"HEAD_DIM": head // 2}, "smaller heads give more attention "
                               "heads at the same width", "attention", "HEAD_DIM:down"))
        moves.append(_move(values, {"HEAD_DIM": head * 2}, "bigger heads give fewer, richer "
                           "attention heads", "attention", "HEAD_DIM:up"))
    pattern = values.get("WINDOW_PATTERN")
    if isinstance(pattern, str):
        for other in WINDOW_PATTERNS:
            if other != pattern:
                more = other.count("L") / len(other) > pattern.count("L") / max(1, len(pattern))
                moves.append(_move(values, {"WINDOW_PATTERN": other},
                                   "more full-context layers may help" if more else
                                   "more sliding-window layers are cheaper per step",
                                   "attention", f"WINDOW_PATTERN={other}"))
    for name, lo, hi, why_up, why_down in (
            ("WARMDOWN_RATIO", 0.0, 0.9, "a longer warmdown may settle the weights better",
             "a shorter warmdown keeps the full learning rate longer"),
            ("WARMUP_RATIO", 0.0, 0.3, "a short warmup may stabilise the first steps",
             "less warmup spends more of the budget at full learning rate"),
            ("FINAL_LR_FRAC", 0.0, 0.5, "ending above zero learning rate may keep learning to the end",
             "decaying closer to zero may settle the weights better")):
        current = values.get(name)
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            for direction, new, why in (("up", min(hi, current + step), why_up),
                                        ("down", max(lo, current - step), why_down)):
                new = _round(new)
                if new != current:
                    moves.append(_move(values, {name: new}, why, "schedule", f"{name}:{direction}"))
    betas = values.get("ADAM_BETAS")
    if isinstance(betas, tuple) and len(betas) == 2:
        for beta1 in (0.7, 0.8, 0.9):
            if beta1 != betas[0]:
                moves.append(_move(values, {"ADAM_BETAS": (beta1, betas[1])},
                                   "a different Adam momentum may suit the short run",
                                   "optimizer", f"ADAM_BETAS={format_value((beta1, betas[1]))}"))
    moves += _batch_moves(values, max_seq_len)
    return [m for m in moves if _plausible(values, m.changes)]


def _plausible(values: Mapping[str, Any], changes: Mapping[str, Any]) -> bool:
    """Skip what train.py would reject or balloon: non-finite numbers, odd or oversized heads."""
    if any(isinstance(v, float) and not math.isfinite(v) for v in changes.values()):
        return False
    merged = {**values, **changes}
    depth, aspect, head = merged.get("DEPTH"), merged.get("ASPECT_RATIO"), merged.get("HEAD_DIM")
    if isinstance(depth, int) and isinstance(aspect, int) and isinstance(head, int):
        return head % 2 == 0 and head <= 2 * depth * aspect
    return True


# ---------------------------------------------------------------------------
# Choosing the next move

@dataclass
class SearchState:
    """What the agent knows when it picks the next experiment."""

    values: dict[str, Any]  # the constants at the branch head (the current best)
    baseline: dict[str, Any]  # main's constants: what ablation goes back to
    tried: set[tuple] = field(default_factory=set)  # config_key of every configuration run
    strategy: str = "explore"  # cockpit suggest's strategy
    underexplored: list[str] = field(default_factory=list)  # categories with few runs
    near_misses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (id, changes)
    momentum: tuple[str, ...] = ()  # keys of the move behind the branch's last keep
    failed: set[str] = field(default_factory=set)  # keys of moves that crashed
    careful: bool = False  # after a crash streak: small steps only


def _fresh(state: SearchState, move: Move) -> bool:
    merged = {**state.values, **move.changes}
    return (config_key(merged) not in state.tried and not set(move.keys) & state.failed
            and bool(changes_between(state.values, merged)))


def _combine(state: SearchState) -> list[Move]:
    out = []
    pairs = [(a, b) for i, a in enumerate(state.near_misses) for b in state.near_misses[i + 1:]]
    for (id_a, a), (id_b, b) in pairs:
        if set(a) & set(b):
            continue
        changes = {k: v for k, v in {**a, **b}.items() if state.values.get(k) != v}
        if changes:
            out.append(_move(state.values, changes, f"near-misses #{id_a} and #{id_b} may add up "
                             "to a real improvement together", "other", f"combine:{id_a}+{id_b}"))
    return out


def _ablate(state: SearchState) -> list[Move]:
    return [_move(state.values, {k: state.baseline[k]}, f"does {k} still matter? back to main's "
                  "value to find out", "other", f"{k}=baseline")
            for k, v in state.values.items() if k in state.baseline and state.baseline[k] != v]


def next_move(state: SearchState, rng: Any, max_seq_len: int = 2048) -> Move | None:
    """The next experiment: suggest's strategy first, then any configuration not run yet."""
    bold = state.strategy == "explore" and not state.careful
    singles = [m for m in propose_moves(state.values, bold=bold, max_seq_len=max_seq_len)
               if _fresh(state, m)]
    if state.strategy == "combine":
        combined = [m for m in _combine(state) if _fresh(state, m)]
        if combined:
            return combined[0]
    if state.strategy == "ablation":
        ablations = [m for m in _ablate(state) if _fresh(state, m)]
        if ablations:
            return rng.choice(ablations)
    if state.momentum and not state.careful:
        again = [m for m in singles if m.keys == state.momentum]
        if again:
            return again[0]
    if singles:
        weights = [3.0 if m.category in state.underexplored else 1.0 for m in singles]
        return rng.choices(singles, weights=weights)[0]
    others = [m for m in propose_moves(state.values, bold=not bold, max_seq_len=max_seq_len)
              if _fresh(state, m)]
    if others:
        return rng.choice(others)
    pairs = propose_moves(state.values, bold=True, max_seq_len=max_seq_len)
    rng.shuffle(pairs)
    for a, b in zip(pairs, pairs[1:]):
        if set(a.changes) & set(b.changes):
            continue
        move = _move(state.values, {**a.changes, **b.changes}, f"{a.hypothesis}; and {b.hypothesis}",
                     a.category, *a.keys, *b.keys)
        if _fresh(state, move):
            return move
    return None
