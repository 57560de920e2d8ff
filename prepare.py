"""
One-time data preparation for autoresearch experiments.
Downloads data shards (or builds them from local text) and trains a BPE tokenizer.

Usage:
    python prepare.py                          # full prep (download + tokenizer)
    python prepare.py --num-shards 8           # download only 8 training shards (for testing)
    python prepare.py --source DIR             # build the shards from local text instead of downloading
    python prepare.py --source docs.jsonl --num-shards 4 --force   # replace existing data, 4 train shards

--source takes a directory (searched recursively for .txt/.md files, .jsonl files and .parquet
files), a .jsonl file with a "text" field per line, or a .parquet file with a "text" column. A text
file becomes documents of whole paragraphs, at most SOURCE_DOC_CHARS characters each (a short file
is one document). Documents are shuffled with a fixed seed and split into --num-shards training shards plus one validation
shard, written under the pinned validation name (shard_06542.parquet), so everything downstream
reads local data exactly as it reads climbmix.

Data and tokenizer are stored in ~/.cache/autoresearch/ (data/ and tokenizer/).

Environment overrides (defaults are upstream's; train.py prints the effective values in its summary,
and runs made under different values must not be compared):
    AUTORESEARCH_CACHE        cache directory (default ~/.cache/autoresearch)
    AUTORESEARCH_BASE_URL     download base URL (default: karpathy/climbmix-400b-shuffle on Hugging Face)
    AUTORESEARCH_TIME_BUDGET  training time budget in seconds (default 300)
    AUTORESEARCH_MAX_SEQ_LEN  context length (default 2048)
    AUTORESEARCH_EVAL_TOKENS  validation tokens behind val_bpb (default 40*524288 = 20971520)
    AUTORESEARCH_VOCAB_SIZE   tokenizer vocabulary size (default 8192)
The last four exist for smoke-scale runs on small machines and in tests.
"""

import os
import time
import math
import argparse
import pickle
import json
import random
import re
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Iterator

import requests
import pyarrow as pa
import pyarrow.parquet as pq
import rustbpe
import tiktoken
import torch


class PrepareError(SystemExit):
    """A problem the user fixes by (re)running prepare.py: exits 1 with one clear line, no traceback."""


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        raise PrepareError(f"{name}={value!r} is not a whole number") from None
    if number <= 0:
        raise PrepareError(f"{name}={value!r} must be positive")
    return number

# ---------------------------------------------------------------------------
# Constants (fixed, do not modify; smoke-scale runs override them from the environment)
# ---------------------------------------------------------------------------

MAX_SEQ_LEN = _env_int("AUTORESEARCH_MAX_SEQ_LEN", 2048)        # context length
TIME_BUDGET = _env_int("AUTORESEARCH_TIME_BUDGET", 300)         # training time budget in seconds (5 minutes)
EVAL_TOKENS = _env_int("AUTORESEARCH_EVAL_TOKENS", 40 * 524288) # number of tokens for val eval

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

CACHE_DIR = os.environ.get("AUTORESEARCH_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "autoresearch")
DATA_DIR = os.path.join(CACHE_DIR, "data")
TOKENIZER_DIR = os.path.join(CACHE_DIR, "tokenizer")
BASE_URL = os.environ.get("AUTORESEARCH_BASE_URL") or "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main"
MAX_SHARD = 6542 # the last datashard is shard_06542.parquet
VAL_SHARD = MAX_SHARD  # pinned validation shard (shard_06542)
VAL_FILENAME = f"shard_{VAL_SHARD:05d}.parquet"
VOCAB_SIZE = _env_int("AUTORESEARCH_VOCAB_SIZE", 8192)

MAX_ATTEMPTS = 5          # download attempts per shard
RETRY_DELAY_S = 2.0       # wait before retry n is RETRY_DELAY_S * 2**(n-1) seconds (2, 4, 8, 16)
SOURCE_MARKER = "source.json"   # in DATA_DIR: which --source the shards were built from
SOURCE_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")  # what --source reads
SOURCE_DOC_CHARS = 4 * MAX_SEQ_LEN  # --source text files are cut into documents of about one row (~4 chars/token)
SOURCE_SEED = 42          # fixed shuffle of --source documents before sharding
ROW_GROUP_SIZE = 1024     # documents per parquet row group in shards built from --source
MIN_VAL_DOCS = 100        # fewer validation documents than this: val_bpb rests on too little text

# BPE split pattern (GPT-4 style, with \p{N}{1,2} instead of {1,3})
SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""

SPECIAL_TOKENS = [f"<|reserved_{i}|>" for i in range(4)]
BOS_TOKEN = "<|reserved_0|>"

RUN_PREPARE = "run `python prepare.py` (or `python prepare.py --source DIR`)"

# ---------------------------------------------------------------------------
# Data download
# ---------------------------------------------------------------------------

def download_single_shard(index):
    """Download one parquet shard with retries. Returns True on success."""
    filename = f"shard_{index:05d}.parquet"
    filepath = os.path.join(DATA_DIR, filename)
    if os.path.exists(filepath):
        return True

    url = f"{BASE_URL}/{filename}"
    temp_path = filepath + ".tmp"
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            with requests.get(url, stream=True, timeout=30) as response:
                response.raise_for_status()
                with open(temp_path, "wb") as f:
                    for chunk in response.iter_content(chunk_size=1024 * 1024):
                        f.write(chunk)
            pq.ParquetFile(temp_path)  # a truncated body fails here (no footer) instead of becoming a shard
            os.replace(temp_path, filepath)
            return True
        except (requests.RequestException, OSError, pa.ArrowException) as e:
            print(f"  Attempt {attempt}/{MAX_ATTEMPTS} failed for {filename}: {e}", flush=True)
        finally:
            if os.path.exists(temp_path):
                os.remove(temp_path)
        if attempt < MAX_ATTEMPTS:
            time.sleep(RETRY_DELAY_S * 2 ** (attempt - 1))
    return False


def download_data(num_shards, download_workers=8):
    """Download training shards + pinned validation shard."""
    _refuse_to_mix("download", source=None)
    os.makedirs(DATA_DIR, exist_ok=True)
    num_train = min(num_shards, MAX_SHARD)
    ids = list(range(num_train))
    if VAL_SHARD not in ids:
        ids.append(VAL_SHARD)

    missing = [i for i in ids if not os.path.exists(os.path.join(DATA_DIR, f"shard_{i:05d}.parquet"))]
    if not missing:
        print(f"Data: all {len(ids)} shards already downloaded at {DATA_DIR}")
        return

    print(f"Data: downloading {len(missing)} shards from {BASE_URL} ({len(ids) - len(missing)} already exist)...", flush=True)
    t0 = time.time()
    failed, total_bytes = [], 0
    with ThreadPoolExecutor(max_workers=max(1, min(download_workers, len(missing)))) as pool:
        futures = {pool.submit(download_single_shard, i): i for i in missing}
        for done, future in enumerate(as_completed(futures), start=1):
            filename = f"shard_{futures[future]:05d}.parquet"
            if not future.result():
                failed.append(filename)
                print(f"  [{done}/{len(missing)}] {filename} FAILED", flush=True)
                continue
            size = os.path.getsize(os.path.join(DATA_DIR, filename))
            total_bytes += size
            print(f"  [{done}/{len(missing)}] {filename} {size / 1e6:.1f} MB ({total_bytes / 1e6:.1f} MB so far)", flush=True)

    if failed:
        raise PrepareError(f"Data: {len(failed)} of {len(missing)} shards failed to download ({', '.join(sorted(failed))}): "
                           f"run `python prepare.py` again to retry (finished shards are kept)")
    print(f"Data: {len(ids)} shards ready at {DATA_DIR} ({total_bytes / 1e6:.1f} MB in {time.time() - t0:.1f}s)")

# ---------------------------------------------------------------------------
# Shards from local text (--source)
# ---------------------------------------------------------------------------

def _text_file_documents(path: Path) -> Iterator[str]:
    """Paragraph groups of at most SOURCE_DOC_CHARS characters, so a long file still packs into many rows."""
    paragraphs = re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace"))
    doc = ""
    for paragraph in (p.strip() for p in paragraphs if p.strip()):
        if doc and len(doc) + 2 + len(paragraph) > SOURCE_DOC_CHARS:
            yield doc
            doc = ""
        doc = f"{doc}\n\n{paragraph}" if doc else paragraph
        while len(doc) > SOURCE_DOC_CHARS:
            yield doc[:SOURCE_DOC_CHARS]
            doc = doc[SOURCE_DOC_CHARS:]
    if doc:
        yield doc


def _jsonl_documents(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise PrepareError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(record, dict) or not isinstance(record.get("text"), str):
                raise PrepareError(f'{path}:{lineno}: expected an object with a "text" string field')
            yield record["text"]


def _parquet_documents(path: Path) -> Iterator[str]:
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise PrepareError(f"{path}: not a readable parquet file ({e})") from None
    if "text" not in pf.schema_arrow.names:
        raise PrepareError(f'{path}: no "text" column (columns: {", ".join(pf.schema_arrow.names)})')
    for rg_idx in range(pf.num_row_groups):
        yield from (text for text in pf.read_row_group(rg_idx, columns=["text"]).column("text").to_pylist() if text)


def iter_source_documents(source: str) -> Iterator[str]:
    """Yield the non-empty documents of a --source path (directory, .txt/.md, .jsonl or .parquet)."""
    root = Path(source).expanduser()
    if not root.exists():
        raise PrepareError(f"--source {source}: no such file or directory")
    if root.is_dir():
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SOURCE_SUFFIXES)
    elif root.suffix.lower() in SOURCE_SUFFIXES:
        files = [root]
    else:
        raise PrepareError(f"--source {source}: unsupported file type (use a directory, {', '.join(SOURCE_SUFFIXES)})")
    readers = {".txt": _text_file_documents, ".md": _text_file_documents, ".jsonl": _jsonl_documents, ".parquet": _parquet_documents}
    for path in files:
        for doc in readers[path.suffix.lower()](path):
            doc = doc.strip()
            if doc:
                yield doc


def _write_shard(docs: list[str], filename: str) -> None:
    """Write atomically: a crash leaves a .tmp file, never a half-written shard."""
    filepath = os.path.join(DATA_DIR, filename)
    pq.write_table(pa.table({"text": docs}), filepath + ".tmp", row_group_size=ROW_GROUP_SIZE)
    os.replace(filepath + ".tmp", filepath)


def build_shards_from_source(source: str, num_shards: int) -> None:
    """Split local documents into num_shards training shards + the pinned validation shard."""
    marker = {"source": str(Path(source).expanduser().resolve()), "num_shards": num_shards}
    marker_path = os.path.join(DATA_DIR, SOURCE_MARKER)
    if os.path.exists(marker_path) and _read_marker() == marker and list_parquet_files():
        print(f"Data: already built from {marker['source']} at {DATA_DIR} (--force rebuilds)")
        return
    _refuse_to_mix("build from --source", source=marker["source"])

    print(f"Data: reading documents from {marker['source']}...", flush=True)
    t0 = time.time()
    docs = list(iter_source_documents(source))
    if not docs:
        raise PrepareError(f"--source {source}: no text found (looked for non-empty .txt/.md files, "
                           f'.jsonl "text" fields and parquet "text" columns)')
    if len(docs) < 2:
        raise PrepareError(f"--source {source}: found 1 document, need at least 2 (one for training, one for validation)")
    random.Random(SOURCE_SEED).shuffle(docs)
    num_train = min(num_shards, len(docs) - 1)
    bounds = [round(i * len(docs) / (num_train + 1)) for i in range(num_train + 2)]
    nchars = sum(len(doc) for doc in docs)
    print(f"Data: {len(docs):,} documents, {nchars / 1e6:.1f}M characters -> {num_train} training shards + 1 validation shard")

    os.makedirs(DATA_DIR, exist_ok=True)
    for shard in range(num_train + 1):
        filename = VAL_FILENAME if shard == num_train else f"shard_{shard:05d}.parquet"
        _write_shard(docs[bounds[shard]:bounds[shard + 1]], filename)
    with open(marker_path, "w") as f:
        json.dump(marker, f)
    print(f"Data: {num_train + 1} shards written to {DATA_DIR} in {time.time() - t0:.1f}s")


def _read_marker() -> dict | None:
    try:
        with open(os.path.join(DATA_DIR, SOURCE_MARKER)) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def _refuse_to_mix(action: str, source: str | None) -> None:
    """Shards of different origins in one DATA_DIR would silently mix: stop and say how to proceed."""
    existing = list_parquet_files()
    marker = _read_marker() or {}
    built_from = marker.get("source")
    if not existing or (source is None and built_from is None):
        return
    origin = f"built from {built_from} with --num-shards {marker.get('num_shards')}" if built_from else "downloaded"
    raise PrepareError(f"{DATA_DIR} already holds {len(existing)} shards {origin}; cannot {action} into it: "
                       f"pass --force to replace them (and the tokenizer), or set AUTORESEARCH_CACHE to another directory")


def remove_prepared_data() -> None:
    """--force: delete shards, marker and tokenizer, so the next steps start clean."""
    for path in list_parquet_files() + [os.path.join(DATA_DIR, SOURCE_MARKER)]:
        if os.path.exists(path):
            os.remove(path)
    shutil.rmtree(TOKENIZER_DIR, ignore_errors=True)

def validation_shard_warning():
    """None, or why the validation shard is too small for EVAL_TOKENS (checked after the tokenizer exists).

    The eval packs rows of MAX_SEQ_LEN + 1 tokens and crops a document that fits nowhere, so a document
    counts with at most one row: with too few usable tokens val_bpb scores the same text several times.
    """
    docs = pq.read_table(os.path.join(DATA_DIR, VAL_FILENAME), columns=["text"]).column("text").to_pylist()
    lengths = [len(ids) + 1 for ids in Tokenizer.from_directory().encode(docs)]  # + BOS
    usable = sum(min(n, MAX_SEQ_LEN + 1) for n in lengths)
    if len(docs) >= MIN_VAL_DOCS and usable >= EVAL_TOKENS:
        return None
    return (f"the validation shard holds {len(docs):,} documents, {usable:,} usable tokens "
            f"({sum(lengths):,} in all, at most {MAX_SEQ_LEN + 1} per document), but val_bpb reads "
            f"EVAL_TOKENS={EVAL_TOKENS:,} tokens and wants at least {MIN_VAL_DOCS} documents: it would score "
            f"the same text {EVAL_TOKENS / max(usable, 1):.1f} times. Add text (more, shorter documents) "
            f"or lower AUTORESEARCH_EVAL_TOKENS")

# ---------------------------------------------------------------------------
# Tokenizer training
# ---------------------------------------------------------------------------

def list_parquet_files():
    """Return sorted list of parquet file paths in the data directory."""
    if not os.path.isdir(DATA_DIR):
        return []
    files = sorted(f for f in os.listdir(DATA_DIR) if f.endswith(".parquet"))
    return [os.path.join(DATA_DIR, f) for f in files]


def text_iterator(stats, max_chars=1_000_000_000, doc_cap=10_000):
    """Yield documents from training split (all shards except pinned val shard)."""
    parquet_paths = [p for p in list_parquet_files() if not p.endswith(VAL_FILENAME)]
    for filepath in parquet_paths:
        pf = pq.ParquetFile(filepath)
        for rg_idx in range(pf.num_row_groups):
            rg = pf.read_row_group(rg_idx)
            for text in rg.column("text").to_pylist():
                doc = text[:doc_cap] if len(text) > doc_cap else text
                stats["docs"] += 1
                stats["chars"] += len(doc)
                yield doc
                if stats["chars"] >= max_chars:
                    return


def train_tokenizer():
    """Train BPE tokenizer using rustbpe, save as tiktoken pickle."""
    tokenizer_pkl = os.path.join(TOKENIZER_DIR, "tokenizer.pkl")
    token_bytes_path = os.path.join(TOKENIZER_DIR, "token_bytes.pt")

    if os.path.exists(tokenizer_pkl) and os.path.exists(token_bytes_path):
        Tokenizer.from_directory()  # fails clearly on a vocab size mismatch
        print(f"Tokenizer: already trained at {TOKENIZER_DIR}")
        return
    if VOCAB_SIZE < 256 + len(SPECIAL_TOKENS):
        raise PrepareError(f"AUTORESEARCH_VOCAB_SIZE={VOCAB_SIZE} is too small: the minimum is {256 + len(SPECIAL_TOKENS)} (256 bytes + special tokens)")

    parquet_files = list_parquet_files()
    train_files = [p for p in parquet_files if not p.endswith(VAL_FILENAME)]
    if not train_files or len(train_files) == len(parquet_files):
        raise PrepareError(f"Tokenizer: need at least 1 training shard and the validation shard {VAL_FILENAME} in {DATA_DIR}: {RUN_PREPARE}")

    os.makedirs(TOKENIZER_DIR, exist_ok=True)

    # --- Train with rustbpe ---
    print(f"Tokenizer: training BPE tokenizer (vocab_size={VOCAB_SIZE:,}) on {len(train_files)} training shards...", flush=True)
    t0 = time.time()

    stats = {"docs": 0, "chars": 0}
    tokenizer = rustbpe.Tokenizer()
    vocab_size_no_special = VOCAB_SIZE - len(SPECIAL_TOKENS)
    tokenizer.train_from_iterator(text_iterator(stats), vocab_size_no_special, pattern=SPLIT_PATTERN)

    # Build tiktoken encoding from trained merges
    pattern = tokenizer.get_pattern()
    mergeable_ranks = {bytes(k): v for k, v in tokenizer.get_mergeable_ranks()}
    if len(mergeable_ranks) != vocab_size_no_special:
        raise PrepareError(f"Tokenizer: {stats['docs']:,} documents ({stats['chars']:,} characters) are too little text to learn "
                           f"{VOCAB_SIZE:,} tokens (got {len(mergeable_ranks) + len(SPECIAL_TOKENS):,}): add text or lower AUTORESEARCH_VOCAB_SIZE")
    tokens_offset = len(mergeable_ranks)
    special_tokens = {name: tokens_offset + i for i, name in enumerate(SPECIAL_TOKENS)}
    enc = tiktoken.Encoding(
        name="rustbpe",
        pat_str=pattern,
        mergeable_ranks=mergeable_ranks,
        special_tokens=special_tokens,
    )
    print(f"Tokenizer: trained on {stats['docs']:,} documents ({stats['chars'] / 1e6:.1f}M characters) in {time.time() - t0:.1f}s", flush=True)

    # --- Build token_bytes lookup for BPB evaluation ---
    print("Tokenizer: building token_bytes lookup...")
    special_set = set(SPECIAL_TOKENS)
    token_bytes_list = []
    for token_id in range(enc.n_vocab):
        token_str = enc.decode([token_id])
        if token_str in special_set:
            token_bytes_list.append(0)
        else:
            token_bytes_list.append(len(token_str.encode("utf-8")))
    torch.save(torch.tensor(token_bytes_list, dtype=torch.int32), token_bytes_path + ".tmp")
    with open(tokenizer_pkl + ".tmp", "wb") as f:
        pickle.dump(enc, f)
    os.replace(token_bytes_path + ".tmp", token_bytes_path)
    os.replace(tokenizer_pkl + ".tmp", tokenizer_pkl)
    print(f"Tokenizer: saved {tokenizer_pkl} and {token_bytes_path}")

    # Sanity check
    test = "Hello world! Numbers: 123. Unicode: 你好"
    encoded = enc.encode_ordinary(test)
    decoded = enc.decode(encoded)
    if decoded != test:
        raise PrepareError(f"Tokenizer: roundtrip failed: {test!r} -> {decoded!r}")
    print(f"Tokenizer: sanity check passed (vocab_size={enc.n_vocab})")

# ---------------------------------------------------------------------------
# Runtime utilities (imported by train.py)
# ---------------------------------------------------------------------------

def default_device() -> str:
    """cuda if available, else mps, else cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


class Tokenizer:
    """Minimal tokenizer wrapper. Training is handled above."""

    def __init__(self, enc):
        self.enc = enc
        self.bos_token_id = enc.encode_single_token(BOS_TOKEN)

    @classmethod
    def from_directory(cls, tokenizer_dir=None):
        tokenizer_dir = tokenizer_dir or TOKENIZER_DIR
        path = os.path.join(tokenizer_dir, "tokenizer.pkl")
        if not os.path.exists(path):
            raise PrepareError(f"no tokenizer in {tokenizer_dir}: {RUN_PREPARE}")
        with open(path, "rb") as f:
            enc = pickle.load(f)
        if enc.n_vocab != VOCAB_SIZE:
            raise PrepareError(f"the tokenizer in {tokenizer_dir} has {enc.n_vocab:,} tokens but VOCAB_SIZE is {VOCAB_SIZE:,} "
                               f"(AUTORESEARCH_VOCAB_SIZE): use the AUTORESEARCH_VOCAB_SIZE it was made with, "
                               f"or another AUTORESEARCH_CACHE, or rerun prepare.py with --force")
        return cls(enc)

    def get_vocab_size(self):
        return self.enc.n_vocab

    def get_bos_token_id(self):
        return self.bos_token_id

    def encode(self, text, prepend=None, num_threads=8):
        if prepend is not None:
            prepend_id = prepend if isinstance(prepend, int) else self.enc.encode_single_token(prepend)
        if isinstance(text, str):
            ids = self.enc.encode_ordinary(text)
            if prepend is not None:
                ids.insert(0, prepend_id)
        elif isinstance(text, list):
            ids = self.enc.encode_ordinary_batch(text, num_threads=num_threads)
            if prepend is not None:
                for row in ids:
                    row.insert(0, prepend_id)
        else:
            raise ValueError(f"Invalid input type: {type(text)}")
        return ids

    def decode(self, ids):
        return self.enc.decode(ids)


def get_token_bytes(device="cpu"):
    path = os.path.join(TOKENIZER_DIR, "token_bytes.pt")
    if not os.path.exists(path):
        raise PrepareError(f"no token_bytes.pt in {TOKENIZER_DIR}: {RUN_PREPARE}")
    with open(path, "rb") as f:
        return torch.load(f, map_location=device)


def _document_batches(split, tokenizer_batch_size=128):
    """Infinite iterator over document batches from parquet files."""
    parquet_paths = list_parquet_files()
    if not parquet_paths:
        raise PrepareError(f"no data in {DATA_DIR}: {RUN_PREPARE}")
    val_path = os.path.join(DATA_DIR, VAL_FILENAME)
    if split == "train":
        parquet_paths = [p for p in parquet_paths if p != val_path]
        if not parquet_paths:
            raise PrepareError(f"no training shards in {DATA_DIR} (only {VAL_FILENAME}): run `python prepare.py --num-shards N` (or `--source DIR`)")
    else:
        if val_path not in parquet_paths:
            raise PrepareError(f"validation shard {VAL_FILENAME} missing in {DATA_DIR}: {RUN_PREPARE}")
        parquet_paths = [val_path]
    epoch = 1
    while True:
        any_docs = False
        for filepath in parquet_paths:
            pf = pq.ParquetFile(filepath)
            for rg_idx in range(pf.num_row_groups):
                rg = pf.read_row_group(rg_idx)
                batch = rg.column('text').to_pylist()
                for i in range(0, len(batch), tokenizer_batch_size):
                    any_docs = True
                    yield batch[i:i+tokenizer_batch_size], epoch
        if not any_docs:
            raise PrepareError(f"the {split} shards in {DATA_DIR} hold no documents: {RUN_PREPARE}")
        epoch += 1


def make_dataloader(tokenizer, B, T, split, buffer_size=1000, device=None):
    """
    BOS-aligned dataloader with best-fit packing.
    Every row starts with BOS. Documents packed using best-fit to minimize cropping.
    When no document fits remaining space, crops shortest doc to fill exactly.
    100% utilization (no padding). Yields (inputs, targets, epoch) on device (default: cuda > mps > cpu);
    the yielded tensors are reused buffers, overwritten by the next batch.
    """
    assert split in ["train", "val"]
    device = torch.device(device or default_device())
    pin = device.type == "cuda"
    row_capacity = T + 1
    batches = _document_batches(split)
    bos_token = tokenizer.get_bos_token_id()
    doc_buffer = []
    epoch = 1

    def refill_buffer():
        nonlocal epoch
        doc_batch, epoch = next(batches)
        token_lists = tokenizer.encode(doc_batch, prepend=bos_token)
        doc_buffer.extend(token_lists)

    # Pre-allocate buffers: [inputs (B*T) | targets (B*T)]
    row_buffer = torch.empty((B, row_capacity), dtype=torch.long)
    cpu_buffer = torch.empty(2 * B * T, dtype=torch.long, pin_memory=pin)
    gpu_buffer = cpu_buffer if device.type == "cpu" else torch.empty(2 * B * T, dtype=torch.long, device=device)  # the device's buffer
    cpu_inputs = cpu_buffer[:B * T].view(B, T)
    cpu_targets = cpu_buffer[B * T:].view(B, T)
    inputs = gpu_buffer[:B * T].view(B, T)
    targets = gpu_buffer[B * T:].view(B, T)

    while True:
        for row_idx in range(B):
            pos = 0
            while pos < row_capacity:
                while len(doc_buffer) < buffer_size:
                    refill_buffer()

                remaining = row_capacity - pos

                # Find largest doc that fits entirely
                best_idx = -1
                best_len = 0
                for i, doc in enumerate(doc_buffer):
                    doc_len = len(doc)
                    if doc_len <= remaining and doc_len > best_len:
                        best_idx = i
                        best_len = doc_len

                if best_idx >= 0:
                    doc = doc_buffer.pop(best_idx)
                    row_buffer[row_idx, pos:pos + len(doc)] = torch.tensor(doc, dtype=torch.long)
                    pos += len(doc)
                else:
                    # No doc fits — crop shortest to fill remaining
                    shortest_idx = min(range(len(doc_buffer)), key=lambda i: len(doc_buffer[i]))
                    doc = doc_buffer.pop(shortest_idx)
                    row_buffer[row_idx, pos:pos + remaining] = torch.tensor(doc[:remaining], dtype=torch.long)
                    pos += remaining

        cpu_inputs.copy_(row_buffer[:, :-1])
        cpu_targets.copy_(row_buffer[:, 1:])
        if gpu_buffer is not cpu_buffer:
            gpu_buffer.copy_(cpu_buffer, non_blocking=pin)
        yield inputs, targets, epoch

# ---------------------------------------------------------------------------
# Evaluation (DO NOT CHANGE — this is the fixed metric)
# ---------------------------------------------------------------------------

@torch.no_grad()
def evaluate_bpb(model, tokenizer, batch_size, device=None):
    """
    Bits per byte (BPB): vocab size-independent evaluation metric.
    Sums per-token cross-entropy (in nats), sums target byte lengths,
    then converts nats/byte to bits/byte. Special tokens (byte length 0)
    are excluded from both sums.
    Uses fixed MAX_SEQ_LEN so results are comparable across configs.
    """
    if device is None:
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else default_device()
    token_bytes = get_token_bytes(device=device)
    val_loader = make_dataloader(tokenizer, batch_size, MAX_SEQ_LEN, "val", device=device)
    steps = max(1, EVAL_TOKENS // (batch_size * MAX_SEQ_LEN))
    total_nats = 0.0
    total_bytes = 0
    for _ in range(steps):
        x, y, _ = next(val_loader)
        loss_flat = model(x, y, reduction='none').view(-1)
        y_flat = y.view(-1)
        nbytes = token_bytes[y_flat]
        mask = nbytes > 0
        total_nats += (loss_flat * mask).sum().item()
        total_bytes += nbytes.sum().item()
    return total_nats / (math.log(2) * total_bytes)

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Prepare data and tokenizer for autoresearch")
    parser.add_argument("--num-shards", type=int, default=10, help="Number of training shards to download or build (-1 = all). Val shard is always pinned.")
    parser.add_argument("--download-workers", type=int, default=8, help="Number of parallel download workers")
    parser.add_argument("--source", metavar="PATH", help="Build the shards from local text (directory, .txt/.md, .jsonl, .parquet) instead of downloading")
    parser.add_argument("--force", action="store_true", help="Delete existing shards and tokenizer first")
    args = parser.parse_args()
    if args.num_shards == 0 or args.num_shards < -1:
        parser.error("--num-shards must be at least 1 (or -1 for all)")

    num_shards = MAX_SHARD if args.num_shards == -1 else args.num_shards

    print(f"Cache directory: {CACHE_DIR}")
    print()

    if args.force:
        remove_prepared_data()

    # Step 1: Data (download, or build from local text)
    if args.source:
        build_shards_from_source(args.source, num_shards)
    else:
        download_data(num_shards, download_workers=args.download_workers)
    print()

    # Step 2: Train tokenizer
    train_tokenizer()
    if args.source and (warning := validation_shard_warning()):
        print(f"WARNING: {warning}")
    print()
    print("Done! Ready to train.")
