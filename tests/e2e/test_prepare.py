"""prepare.py: --source shards, the download path against a loopback server, tokenizer, dataloader,
evaluate_bpb."""
from __future__ import annotations

import http.server
import io
import json
import math
import re
import sys
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

from corehelpers import REPO, make_documents, run_script, script_env, write_corpus

sys.path.insert(0, str(REPO))
import prepare

VOCAB = 512
SEQ_LEN = 128


def use_cache(monkeypatch: pytest.MonkeyPatch, cache: Path, **constants: int) -> None:
    """Point the imported prepare module at a cache directory, as the env overrides would at import."""
    monkeypatch.setattr(prepare, "CACHE_DIR", str(cache))
    monkeypatch.setattr(prepare, "DATA_DIR", str(cache / "data"))
    monkeypatch.setattr(prepare, "TOKENIZER_DIR", str(cache / "tokenizer"))
    monkeypatch.setattr(prepare, "VOCAB_SIZE", constants.get("VOCAB_SIZE", VOCAB))
    monkeypatch.setattr(prepare, "MAX_SEQ_LEN", constants.get("MAX_SEQ_LEN", SEQ_LEN))
    monkeypatch.setattr(prepare, "EVAL_TOKENS", constants.get("EVAL_TOKENS", 4 * SEQ_LEN * 3))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache built from a synthetic corpus: 3 training shards + validation shard + tokenizer."""
    root = tmp_path_factory.mktemp("prepared")
    corpus = write_corpus(root / "corpus", n_docs=800)
    with pytest.MonkeyPatch.context() as mp:
        use_cache(mp, root / "cache")
        prepare.build_shards_from_source(str(corpus), num_shards=3)
        prepare.train_tokenizer()
    return root / "cache"


@pytest.fixture
def cache(prepared: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    use_cache(monkeypatch, prepared)
    return prepared


def shard_rows(path: Path) -> list[str]:
    return pq.read_table(path).column("text").to_pylist()

# ---------------------------------------------------------------------------
# --source
# ---------------------------------------------------------------------------

def test_source_layout_keeps_every_document_and_pins_validation_last(cache: Path, tmp_path: Path) -> None:
    data = cache / "data"
    names = sorted(p.name for p in data.glob("*.parquet"))
    assert names == [f"shard_0000{i}.parquet" for i in range(3)] + [prepare.VAL_FILENAME]
    rows = [shard_rows(data / name) for name in names]
    assert all(rows), "every shard holds documents"
    expected = sorted(doc.strip() for doc in make_documents(800))
    assert sorted(doc for shard in rows for doc in shard) == expected
    assert abs(len(rows[-1]) - 800 / 4) <= 1, "the validation shard is one shard's worth"
    assert not list(data.glob("*.tmp"))


def test_source_reads_text_markdown_jsonl_and_parquet(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "src"
    (src / "nested").mkdir(parents=True)
    (src / "a.txt").write_text("first paragraph\n\n\nsecond paragraph\n")
    (src / "nested" / "b.md").write_text("# Title\nbody text\n")
    (src / "c.jsonl").write_text(json.dumps({"text": "from jsonl"}) + "\n\n"
                                 + json.dumps({"text": "   "}) + "\n")
    pq.write_table(pa.table({"text": ["from parquet", ""], "id": [1, 2]}), src / "d.parquet")
    (src / "ignored.py").write_text("print('not text')\n")
    (src / "blank.txt").write_text("\n \n")
    monkeypatch.setattr(prepare, "SOURCE_DOC_CHARS", 20)
    (src / "long.txt").write_text("ab\n\ncd\n\n" + "x" * 45)

    docs = list(prepare.iter_source_documents(str(src)))

    assert docs == ["first paragraph", "second paragraph", "from jsonl", "from parquet",
                    "ab\n\ncd", "x" * 20, "x" * 20, "x" * 5, "# Title\nbody text"]
    assert list(prepare.iter_source_documents(str(src / "c.jsonl"))) == ["from jsonl"]


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"text": "ok"}\n{"text": \n', "bad.jsonl:2: not valid JSON"),
    ("bad.jsonl", '{"body": "no text field"}\n',
     'bad.jsonl:1: expected an object with a "text" string field'),
    ("notes.csv", "a,b\n", "unsupported file type"),
])
def test_source_bad_input_names_the_problem(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(prepare.PrepareError, match=message):
        list(prepare.iter_source_documents(str(path)))


def test_source_parquet_without_text_column_is_an_error(tmp_path: Path) -> None:
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "t.parquet")
    with pytest.raises(prepare.PrepareError, match='no "text" column'):
        list(prepare.iter_source_documents(str(tmp_path / "t.parquet")))


def test_source_rebuild_is_skipped_and_a_different_source_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    use_cache(monkeypatch, tmp_path / "cache")
    one, two = write_corpus(tmp_path / "one", n_docs=10), write_corpus(tmp_path / "two", n_docs=10, seed=1)
    prepare.build_shards_from_source(str(one), num_shards=2)
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache/data").iterdir()}
    prepare.build_shards_from_source(str(one), num_shards=2)
    assert "already built" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache/data").iterdir()} == before
    with pytest.raises(prepare.PrepareError, match="--force"):
        prepare.build_shards_from_source(str(two), num_shards=2)
    with pytest.raises(prepare.PrepareError, match="--force"):
        prepare.download_data(2)

    prepare.remove_prepared_data()
    prepare.build_shards_from_source(str(two), num_shards=2)
    assert sorted(doc for p in (tmp_path / "cache/data").glob("*.parquet") for doc in shard_rows(p)) == \
        sorted(d.strip() for d in make_documents(10, seed=1))


def test_cli_source_without_text_fails_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.md").write_text("   \n")
    result = run_script(REPO / "prepare.py", script_env(tmp_path / "cache"), "--source",
                        str(tmp_path / "empty"))
    assert result.returncode == 1
    assert "no text found" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "cache" / "tokenizer").exists()

def test_validation_shard_with_room_for_eval_tokens_gives_no_warning(cache: Path) -> None:
    assert prepare.validation_shard_warning() is None  # 200 short documents, EVAL_TOKENS 1,536


def test_validation_shard_too_small_for_eval_tokens_is_named(cache: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "EVAL_TOKENS", 10_000_000)
    warning = prepare.validation_shard_warning()
    assert warning is not None
    assert re.search(r"the validation shard holds 200 documents, [\d,]+ usable tokens", warning)
    assert "EVAL_TOKENS=10,000,000" in warning and "lower AUTORESEARCH_EVAL_TOKENS" in warning
    monkeypatch.setattr(prepare, "EVAL_TOKENS", 100)
    monkeypatch.setattr(prepare, "MIN_VAL_DOCS", 1000)
    assert "wants at least 1000 documents" in prepare.validation_shard_warning()


def test_cli_source_warns_when_long_documents_leave_eval_scoring_the_same_text(tmp_path: Path) -> None:
    """Issue 10's smoke-scale trap: a few documents longer than a row, a validation shard of one of them."""
    long_docs = [json.dumps({"text": doc * 40}) + "\n" for doc in make_documents(12)]
    (tmp_path / "docs.jsonl").write_text("".join(long_docs))
    env = script_env(tmp_path / "cache")  # SMOKE_ENV: MAX_SEQ_LEN 256, EVAL_TOKENS 16,384
    source = str(tmp_path / "docs.jsonl")
    result = run_script(REPO / "prepare.py", env, "--source", source, "--num-shards", "4")
    assert result.returncode == 0, result.stderr
    warning = next(line for line in result.stdout.splitlines() if line.startswith("WARNING: "))
    assert "at most 257 per document" in warning and "would score the same text" in warning


# ---------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------

def test_tokenizer_round_trip_and_bos(cache: Path) -> None:
    tok = prepare.Tokenizer.from_directory()
    assert tok.get_vocab_size() == VOCAB
    for text in ["Yesterday kolo carried 3 boxes near the old mill.", "Unicode: 你好, émigré ✓", ""]:
        ids = tok.encode(text)
        assert all(0 <= i < VOCAB for i in ids)
        assert tok.decode(ids) == text
    bos = tok.get_bos_token_id()
    rows = tok.encode(["a b", "c"], prepend=bos)
    assert [row[0] for row in rows] == [bos, bos] and tok.decode(rows[0][1:]) == "a b"
    token_bytes = prepare.get_token_bytes()
    assert token_bytes.shape == (VOCAB,) and token_bytes[bos] == 0
    tokens = tok.encode("the old mill")
    assert all(token_bytes[t] == len(tok.enc.decode_single_token_bytes(t)) for t in tokens)


def test_tokenizer_vocab_mismatch_is_a_clear_error(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prepare, "VOCAB_SIZE", 8192)
    with pytest.raises(prepare.PrepareError, match="has 512 tokens but VOCAB_SIZE is 8,192"):
        prepare.Tokenizer.from_directory()


def test_tokenizer_too_little_text_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_cache(monkeypatch, tmp_path / "cache", VOCAB_SIZE=4096)
    prepare.build_shards_from_source(str(write_corpus(tmp_path / "c", n_docs=20)), num_shards=1)
    with pytest.raises(prepare.PrepareError, match="too little text to learn 4,096 tokens"):
        prepare.train_tokenizer()
    assert not (tmp_path / "cache" / "tokenizer" / "tokenizer.pkl").exists()


def test_env_overrides_are_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTORESEARCH_MAX_SEQ_LEN", "256")
    assert prepare._env_int("AUTORESEARCH_MAX_SEQ_LEN", 2048) == 256
    monkeypatch.setenv("AUTORESEARCH_MAX_SEQ_LEN", "")
    assert prepare._env_int("AUTORESEARCH_MAX_SEQ_LEN", 2048) == 2048
    for bad in ("2k", "0"):
        monkeypatch.setenv("AUTORESEARCH_MAX_SEQ_LEN", bad)
        with pytest.raises(prepare.PrepareError, match="AUTORESEARCH_MAX_SEQ_LEN"):
            prepare._env_int("AUTORESEARCH_MAX_SEQ_LEN", 2048)

# ---------------------------------------------------------------------------
# Dataloader
# ---------------------------------------------------------------------------

def test_dataloader_rows_are_whole_documents_from_bos_without_padding(cache: Path) -> None:
    tok = prepare.Tokenizer.from_directory()
    bos = tok.get_bos_token_id()
    train_docs = [doc for i in range(3) for doc in shard_rows(cache / "data" / f"shard_{i:05d}.parquet")]
    encoded = tok.encode(train_docs, prepend=bos)
    whole = {tuple(ids) for ids in encoded}
    loader = prepare.make_dataloader(tok, 4, SEQ_LEN, "train", buffer_size=50, device="cpu")
    for _ in range(5):
        x, y, epoch = next(loader)
        assert x.shape == y.shape == (4, SEQ_LEN) and x.device.type == "cpu" and epoch >= 1
        assert torch.equal(x[:, 1:], y[:, :-1]), "targets are the inputs shifted by one"
        for row in torch.cat([x, y[:, -1:]], dim=1).tolist():
            assert row[0] == bos
            starts = [i for i, t in enumerate(row) if t == bos] + [len(row)]
            segments = [tuple(row[a:b]) for a, b in zip(starts, starts[1:])]
            assert all(seg in whole for seg in segments[:-1]), "documents are packed whole"
            last = segments[-1]
            assert any(ids[:len(last)] == list(last) for ids in encoded), "only the final document is cropped"


def test_dataloader_without_training_shards_fails_instead_of_looping(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = prepare.Tokenizer.from_directory()
    data = tmp_path / "data"
    monkeypatch.setattr(prepare, "DATA_DIR", str(data))
    with pytest.raises(prepare.PrepareError, match=r"no data in .*python prepare.py"):
        next(prepare.make_dataloader(tok, 2, SEQ_LEN, "train", device="cpu"))
    data.mkdir()
    pq.write_table(pa.table({"text": ["only validation"]}), data / prepare.VAL_FILENAME)
    with pytest.raises(prepare.PrepareError, match="no training shards"):
        next(prepare.make_dataloader(tok, 2, SEQ_LEN, "train", device="cpu"))
    pq.write_table(pa.table({"text": pa.array([], pa.string())}), data / "shard_00000.parquet")
    with pytest.raises(prepare.PrepareError, match="hold no documents"):
        next(prepare.make_dataloader(tok, 2, SEQ_LEN, "train", device="cpu"))

# ---------------------------------------------------------------------------
# evaluate_bpb
# ---------------------------------------------------------------------------

class UnigramModel(torch.nn.Module):
    """Predicts the same fixed distribution at every position."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, x, y, reduction="mean"):
        return F.cross_entropy(self.logits.expand(y.numel(), -1), y.reshape(-1), reduction=reduction)


@pytest.mark.parametrize("logits", [torch.zeros(VOCAB),
                                    torch.randn(VOCAB, generator=torch.Generator().manual_seed(0))],
                         ids=["uniform", "unigram"])
def test_evaluate_bpb_equals_hand_computation(cache: Path, logits: torch.Tensor) -> None:
    tok = prepare.Tokenizer.from_directory()
    batch, steps = 4, prepare.EVAL_TOKENS // (4 * SEQ_LEN)
    assert steps == 3
    nbytes = [0 if t >= VOCAB - len(prepare.SPECIAL_TOKENS) else len(tok.enc.decode_single_token_bytes(t))
              for t in range(VOCAB)]
    log_probs = torch.log_softmax(logits.double(), dim=0).tolist()
    loader = prepare.make_dataloader(tok, batch, SEQ_LEN, "val", device="cpu")
    nats = total_bytes = counted = 0
    for _ in range(steps):
        _, y, _ = next(loader)
        for t in y.flatten().tolist():
            if nbytes[t]:
                nats -= log_probs[t]
                total_bytes += nbytes[t]
                counted += 1
    expected = nats / (math.log(2) * total_bytes)
    if not logits.any():
        assert expected == pytest.approx(math.log(VOCAB) * counted / (math.log(2) * total_bytes))

    assert prepare.evaluate_bpb(UnigramModel(logits), tok, batch) == pytest.approx(expected, rel=1e-5)

# ---------------------------------------------------------------------------
# Download from a loopback server
# ---------------------------------------------------------------------------

class ShardServer:
    """Serves generated parquet shards on 127.0.0.1; `faults[name]` lists what the next requests do wrong."""

    def __init__(self, shards: dict[str, bytes]):
        self.shards, self.faults, self.requests = shards, {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append(name)
                fault = server.faults.get(name, []).pop(0) if server.faults.get(name) else None
                body = server.shards.get(name)
                if body is None or fault == "error":
                    self.send_error(404 if body is None else 503)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if fault == "truncate":  # promise the whole body, send half, hang up
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def parquet_bytes(docs: list[str]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"text": docs}), buffer)
    return buffer.getvalue()


@pytest.fixture
def server():
    docs = make_documents(600, seed=3)
    names = ["shard_00000.parquet", "shard_00001.parquet", prepare.VAL_FILENAME]
    srv = ShardServer({name: parquet_bytes(docs[i::3]) for i, name in enumerate(names)})
    yield srv
    srv.close()


@pytest.mark.slow
def test_cli_download_retries_failed_transfers_and_trains_the_tokenizer(tmp_path: Path,
                                                                        server: ShardServer) -> None:
    server.faults = {"shard_00000.parquet": ["truncate"], "shard_00001.parquet": ["error"]}
    env = script_env(tmp_path / "cache", AUTORESEARCH_BASE_URL=server.url)
    result = run_script(REPO / "prepare.py", env, "--num-shards", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Attempt 1/5 failed for shard_00000.parquet" in result.stdout
    assert "Attempt 1/5 failed for shard_00001.parquet" in result.stdout
    assert "[3/3]" in result.stdout and "Tokenizer: trained on 400 documents" in result.stdout
    data = tmp_path / "cache" / "data"
    assert sorted(p.name for p in data.iterdir()) == sorted(server.shards)
    for name, body in server.shards.items():
        assert (data / name).read_bytes() == body
    assert (tmp_path / "cache" / "tokenizer" / "tokenizer.pkl").exists()


def test_download_that_keeps_failing_leaves_no_partial_shard(tmp_path: Path, server: ShardServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    use_cache(monkeypatch, tmp_path / "cache")
    monkeypatch.setattr(prepare, "BASE_URL", server.url)
    monkeypatch.setattr(prepare, "RETRY_DELAY_S", 0.0)
    server.faults = {"shard_00001.parquet": (["truncate", "error"] * 3)[:prepare.MAX_ATTEMPTS]}
    failed = r"1 of 3 shards failed to download \(shard_00001.parquet\)"
    with pytest.raises(prepare.PrepareError, match=failed):
        prepare.download_data(2, download_workers=2)
    data = tmp_path / "cache" / "data"
    assert sorted(p.name for p in data.iterdir()) == ["shard_00000.parquet", prepare.VAL_FILENAME]
    assert server.requests.count("shard_00001.parquet") == prepare.MAX_ATTEMPTS

    server.requests.clear()
    prepare.download_data(2)  # a rerun fetches only what is missing
    assert server.requests == ["shard_00001.parquet"]
    assert (data / "shard_00001.parquet").read_bytes() == server.shards["shard_00001.parquet"]
