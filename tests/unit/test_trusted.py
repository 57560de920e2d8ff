"""The cockpit's own val_bpb, fast parts: the rules (policy), the evaluator's metric and causality
probe on toy models in-process, the ledger migration, the setting, and a real `cockpit run` of a
train.py that hands over no weights."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from app.config import ConfigError, Settings, load_settings
from app.ledger.schema import SCHEMA_VERSION, TRUST_FLAGS
from app.ledger.store import Ledger
from app.policy import Verdict
from app.policy.trusted import metric_mismatch, over_budget, refuse_keep, wants_measurement
from app.run import trusted_eval
from app.run.trusted import WEIGHTS_ENV, Trust, read_result
from gitrepo import commit_file
from oldledger import v1_ledger
from runnerhelpers import REPO_ROOT, agent_worktree, cli, make_project

# ---------------------------------------------------------------------------
# Rules


@pytest.mark.parametrize(("mode", "decision", "wanted"), [
    ("keeps", "keep", True), ("keeps", "repeat", True), ("keeps", "discard", False),
    ("keeps", "crash", False), ("always", "discard", True), ("always", "keep", True),
    ("always", "timeout", False), ("off", "keep", False), ("off", "repeat", False),
])
def test_which_runs_are_measured(mode: str, decision: str, wanted: bool) -> None:
    assert wants_measurement(mode, decision) is wanted


@pytest.mark.parametrize(("reported", "measured", "flagged"), [
    (0.9876, 0.9876, False), (0.9876, 0.9880, False), (0.9876, 0.9890, True),
    (0.5, 0.99, True), (1.2, 0.99, True), (None, 0.99, True), (math.nan, 0.99, True),
])
def test_metric_mismatch_beyond_eval_noise(reported: float | None, measured: float,
                                           flagged: bool) -> None:
    assert metric_mismatch(reported, measured, 0.001) is flagged


@pytest.mark.parametrize(("wall", "budget", "over"), [
    (300.0, 300, False), (380.0, 300, False), (381.0, 300, True), (900.0, 300, True),
    (4.5, 4, False), (10.1, 4, True), (None, 300, False),
])
def test_over_budget_on_the_runners_clock(wall: float | None, budget: float, over: bool) -> None:
    assert over_budget(wall, budget) is over


def test_refuse_keep_turns_only_keeps_into_discards() -> None:
    keep = Verdict("keep", "improves", is_baseline=True, delta=-0.01, margin=0.002)
    refused = refuse_keep(keep, "the model looks ahead")
    assert (refused.decision, refused.reason, refused.is_baseline) == (
        "discard", "not kept: the model looks ahead", False)
    assert (refused.delta, refused.margin) == (-0.01, 0.002)
    repeat = refuse_keep(Verdict("repeat", "repeat of #3"), "over budget")
    assert (repeat.decision, repeat.reason) == ("repeat", "repeat of #3; over budget")

# ---------------------------------------------------------------------------
# The evaluator's metric and probe, on toy models


class Causal(torch.nn.Module):
    """Predicts from the running mean of the embeddings up to each position."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.emb = torch.nn.Embedding(vocab, 16)
        self.out = torch.nn.Linear(16, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h = self.emb(idx).cumsum(1) / torch.arange(1, idx.size(1) + 1)[None, :, None]
        return self.out(h)


class Peeking(Causal):
    """Adds the next token's embedding: a tiny look-ahead."""

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        ahead = torch.roll(idx, -1, dims=1)
        return super().forward(idx) + 0.05 * self.out(self.emb(ahead))


def toy_data(vocab: int = 64, rows: int = 6, seq: int = 33) -> trusted_eval.EvalData:
    g = torch.Generator().manual_seed(1)
    data = torch.randint(1, vocab, (rows, seq + 1), generator=g)
    token_bytes = torch.randint(1, 4, (vocab,), generator=g)
    token_bytes[0] = 0  # a special token
    data[:, 5] = 0
    return trusted_eval.EvalData(data, token_bytes, seq, rows * seq, vocab)


def test_bits_per_byte_is_prepares_formula_on_logits() -> None:
    data, model = toy_data(), Causal(64)
    got = trusted_eval.bits_per_byte(model, data, torch.device("cpu"))
    x, y = data.rows[:, :-1], data.rows[:, 1:]
    nats = torch.nn.functional.cross_entropy(model(x).detach().reshape(-1, 64), y.reshape(-1),
                                             reduction="none")
    nbytes = data.token_bytes[y.reshape(-1)]
    want = (nats * (nbytes > 0)).sum().item() / (math.log(2) * nbytes.sum().item())
    assert got == pytest.approx(want, rel=1e-6)


def test_uniform_logits_score_log2_vocab_bits_per_token() -> None:
    data = toy_data()

    class Uniform(torch.nn.Module):
        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*idx.shape, 64)

    nbytes = data.token_bytes[data.rows[:, 1:]]
    per_byte = math.log2(64) * int((nbytes > 0).sum()) / int(nbytes.sum())
    assert trusted_eval.bits_per_byte(Uniform(), data, torch.device("cpu")) == pytest.approx(per_byte)


def test_the_causality_probe_passes_a_causal_model_and_catches_a_peeking_one() -> None:
    inputs = toy_data().rows[:, :-1]
    assert trusted_eval.causality_gap(Causal(64), inputs, 64) <= trusted_eval.PROBE_TOLERANCE
    assert trusted_eval.causality_gap(Peeking(64), inputs, 64) > trusted_eval.PROBE_TOLERANCE


def test_probe_rows_change_every_row_right_after_its_cut_and_nothing_before() -> None:
    inputs = toy_data().rows[:, :-1]
    probe, cuts = trusted_eval.probe_rows(inputs, 64)
    assert probe.shape == inputs.shape and cuts[0] == 0 and cuts[-1] == inputs.size(1) - 2
    for i, t in enumerate(cuts):
        assert torch.equal(probe[i, :t + 1], inputs[i, :t + 1])
        assert probe[i, t + 1] != inputs[i, t + 1]


def test_a_model_returning_the_wrong_shape_is_a_clear_error() -> None:
    class Loss(torch.nn.Module):
        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return torch.tensor(0.1)

    with pytest.raises(trusted_eval.EvalError, match=r"logits of shape \(B, T, >= 64\)"):
        trusted_eval.bits_per_byte(Loss(), toy_data(), torch.device("cpu"))


def test_load_model_needs_the_setup_banner_and_the_weights(tmp_path: Path) -> None:
    train = tmp_path / "train.py"
    train.write_text("import torch\nclass GPTConfig: pass\n")
    with pytest.raises(trusted_eval.EvalError, match="no `# Setup` banner"):
        trusted_eval.load_model(train, tmp_path / "w.pt", torch.device("cpu"))
    train.write_text("import torch\n# Setup: model\nclass GPT: pass\n")
    with pytest.raises(trusted_eval.EvalError, match="defines no GPTConfig"):
        trusted_eval.load_model(train, tmp_path / "w.pt", torch.device("cpu"))


def test_read_result_accepts_only_a_finite_positive_value(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    assert "without a result" in read_result(out, 1, 0.5).error
    for text, error in (('{"error": "boom"}', "boom"), ('{"val_bpb": -1, "causal": true}', "unusable"),
                        ('{"val_bpb": 0.9, "causal": "yes"}', "unusable"), ("[1]", "not an object")):
        out.write_text(text)
        assert error in read_result(out, 0, 0.5).error
    out.write_text('{"val_bpb": 0.97, "causal": false, "probe_gap": 2.5, "eval_tokens": 16384}')
    m = read_result(out, 0, 1.5)
    assert (m.val_bpb, m.causal, m.error, m.detail["eval_tokens"]) == (0.97, False, "", 16384)

# ---------------------------------------------------------------------------
# Ledger and settings


def test_a_v1_ledger_gains_the_trust_columns(tmp_path: Path) -> None:
    path = v1_ledger(tmp_path / "ledger.db", [{"created_at": 1.0, "val_bpb": 0.99}])
    with Ledger(path) as ledger:
        exp = ledger.get(1)
        assert ledger.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert exp.val_bpb == 0.99 and exp.measured_val_bpb is None and exp.trusted_eval_s is None
    assert all(getattr(exp, flag) == 0 for flag in TRUST_FLAGS)


def test_trusted_eval_setting(tmp_path: Path) -> None:
    assert load_settings(None).trusted_eval == "keeps"
    (tmp_path / "pyproject.toml").write_text('[tool.cockpit]\ntrusted_eval = "always"\n')
    assert load_settings(tmp_path).trusted_eval == "always"
    (tmp_path / "pyproject.toml").write_text('[tool.cockpit]\ntrusted_eval = "sometimes"\n')
    with pytest.raises(ConfigError, match="trusted_eval must be one of keeps, always, off"):
        load_settings(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.cockpit]\nmetric_tolerance = inf\n')
    with pytest.raises(ConfigError, match="metric_tolerance = inf must be a finite number"):
        load_settings(tmp_path)

# ---------------------------------------------------------------------------
# A real run whose train.py hands over nothing


def test_a_keep_candidate_without_weights_is_not_kept(tmp_path: Path) -> None:
    main = make_project(tmp_path, config='trusted_eval = "keeps"')
    wt = agent_worktree(main, "a1")
    code, out, err = cli("run", "-m", "baseline", cwd=wt)
    assert code == 0, out + err
    assert "DISCARD" in out and "could not measure val_bpb itself" in out
    with Ledger(main / ".autoresearch" / "ledger.db") as ledger:
        first = ledger.get(1)
    assert first.unmeasured == 1 and first.val_bpb is None and first.reported_val_bpb == 0.99
    assert "handed over no weights" in first.reason
    assert first.trusted_eval_s is not None and first.trusted_eval_s < 5


@pytest.mark.slow  # the Modal adapter's imports: ~5-9 s on a loaded machine
def test_a_modal_keep_is_decided_on_the_printed_value_and_flagged_unmeasured(
        tmp_path: Path, cloud: object, clean_env: None) -> None:
    main = make_project(tmp_path, config='trusted_eval = "keeps"')
    wt = agent_worktree(main, "a1")
    commit_file(wt, "modal_train.py", (REPO_ROOT / "modal_train.py").read_text(), "modal")
    code, out, err = cli("run", "--backend", "modal", "--json", "-m", "on the cloud", cwd=wt)
    assert code == 0, err
    result = json.loads(out)
    assert result["decision"] == "keep" and "unmeasured" in result["flags"]
    assert "cannot measure modal runs yet" in result["reason"] and result["val_bpb"] == 0.99


def test_the_evaluator_gets_mains_constants_and_the_runs_devices(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORESEARCH_EVAL_TOKENS", "1024")  # the agent's shell: never the evaluator's
    monkeypatch.setenv("COCKPIT_AGENT", "a1")
    settings = Settings(train_env={"AUTORESEARCH_EVAL_TOKENS": "16384", "AUTORESEARCH_CACHE": "/c"})
    plan = SimpleNamespace(settings=settings, backend="local", env={})
    trust = Trust(plan, tmp_path, 7)  # type: ignore[arg-type]
    handed = trust.child_env({"CUDA_VISIBLE_DEVICES": "GPU-1234"})
    assert handed == {WEIGHTS_ENV: str(tmp_path / "trusted" / "7" / "weights.pt")}
    env = trust.eval_env()
    assert env["AUTORESEARCH_EVAL_TOKENS"] == "16384" and env["AUTORESEARCH_CACHE"] == "/c"
    assert env["CUDA_VISIBLE_DEVICES"] == "GPU-1234" and "COCKPIT_AGENT" not in env
    assert env["PYTHONPATH"] == str(REPO_ROOT)
    assert Trust(SimpleNamespace(settings=Settings(trusted_eval="off"), backend="local", env={}),
                 tmp_path, 8).child_env({}) == {}  # type: ignore[arg-type]
    assert Trust(SimpleNamespace(settings=settings, backend="modal", env={}),
                 tmp_path, 9).child_env({}) == {}  # type: ignore[arg-type]
