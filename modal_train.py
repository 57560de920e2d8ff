"""
Run autoresearch experiments on Modal GPUs: one image for every experiment.

The image holds the training stack, the FA3 kernel (fetched once at build time; train.py loads it
from AUTORESEARCH_FA3_DIR) and prepare.py (fixed); train.py is NOT baked in: the `train`
function takes the train.py source text as its argument, so every experiment reuses the same image.
Prepared data and tokenizer live in a Modal Volume mounted as AUTORESEARCH_CACHE.

Usage:
    modal setup                                          # once: store a Modal token
    modal run modal_train.py                             # fill the volume if needed, then train ./train.py
    modal run modal_train.py --train-path my/train.py --timeout 900
    modal run modal_train.py::prepare                    # only fill the data volume
    python modal_train.py [--train-path PATH] [--timeout S] [--num-shards N]   # same, without the modal CLI

The body of `train` is plain Python (run_train_source, parse_summary, stream_experiment) and runs
locally too, against any directory as the cache. Without Modal credentials every entry point stops
at once with a message telling you to run `modal setup`.
"""
from __future__ import annotations

import argparse
import codecs
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# ---------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------

APP_NAME = "autoresearch"                                  # Modal app name
VOLUME_NAME = "autoresearch-cache"                         # Modal volume holding data/ and tokenizer/
CACHE_MOUNT = "/cache"                                     # volume mount point = AUTORESEARCH_CACHE remotely
GPU_TYPE = os.environ.get("AUTORESEARCH_MODAL_GPU", "H100")  # GPU for `train` (e.g. H100, A100-80GB, L40S)
PYTHON_VERSION = "3.12"                                    # Python inside the image
TORCH_VERSION = "2.10.0"                                   # pyproject's `gpu` extra: PyPI's CUDA 12.8 build, FA3 hub builds
TRAINING_PACKAGES = [                                      # the rest of the `gpu` extra's training stack
    "kernels==0.17.2", "numpy>=2.0", "pyarrow>=20.0", "requests>=2.32", "rustbpe>=0.1.0", "tiktoken>=0.11",
]
FA3_KERNEL = "kernels-community/flash-attn3"               # baked into the image: sm80 and sm90 (A100, H100)
FA3_KERNEL_VERSION = 1                                     # its stable API version on the kernel hub
FA3_DIR = "/opt/fa3"                                       # where the image keeps it; train.py reads AUTORESEARCH_FA3_DIR
HERE = Path(__file__).resolve().parent                     # local: the repo root; remote: /root
PREPARE_PATH = HERE / "prepare.py"                         # fixed data/eval code, copied beside every train.py
REMOTE_PREPARE_PATH = "/root/prepare.py"                   # where the image holds it (beside this file remotely)
NUM_SHARDS = 10                                            # training shards `prepare` downloads (upstream default)
PREPARE_CPUS = 8.0                                         # CPU cores for download + tokenizer training
PREPARE_MEMORY_MB = 32768                                  # memory for tokenizer training
PREPARE_TIMEOUT_S = 2 * 3600                               # Modal limit for `prepare`
TRAIN_TIMEOUT_S = 600.0                                    # default hard limit of one run (2x the 300 s budget)
MAX_FUNCTION_TIMEOUT_S = 3 * 3600                          # Modal limit for `train`; run timeouts are clamped below it
KILL_GRACE_S = 5.0                                         # SIGTERM -> SIGKILL delay when stopping train.py
DRAIN_GRACE_S = 2.0                                        # output still read after train.py exits (its children)
POLL_INTERVAL_S = 0.5                                      # how often the output loop checks the clock
READ_SIZE = 65536                                          # bytes per read of train.py's output
TAIL_CHARS = 65536                                         # output kept for parsing the summary block
SUMMARY_LINE = re.compile(r"([A-Za-z_][\w.\-]*)\s*:\s*(\S.*)")  # a line of train.py's summary block
SUMMARY_VALUE_COLUMN = 18                                  # train.py pads `key:` so text values start here
PROBE_TIMEOUT_S = 3.0                                      # TCP connect to Modal's API before starting anything
DEFAULT_SERVER_URL = "https://api.modal.com,https://api.modal2.com"  # modal's own default API servers

# ---------------------------------------------------------------------------
# Preflight: fail in well under 2 s instead of after a minute of connection retries.
# It reads Modal's settings the way modal.config does (MODAL_* env vars over the active profile of
# MODAL_CONFIG_PATH or ~/.modal.toml) without importing modal, which alone takes 1-2 s.
# ---------------------------------------------------------------------------

def modal_settings(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """The active Modal profile's settings with MODAL_<KEY> environment variables on top."""
    environ = os.environ if environ is None else environ
    path = Path(environ.get("MODAL_CONFIG_PATH") or Path(environ.get("HOME") or "~").expanduser() / ".modal.toml")
    profiles: dict[str, Any] = {}
    if path.is_file():
        try:
            import tomllib
            profiles = tomllib.loads(path.read_text(encoding="utf-8"))
        except ModuleNotFoundError:  # Python 3.10: modal's own dependency reads it
            import toml
            profiles = toml.loads(path.read_text(encoding="utf-8"))
    active = [name for name, values in profiles.items() if isinstance(values, dict) and values.get("active")]
    profile = environ.get("MODAL_PROFILE") or (active[0] if active else "default")
    settings = dict(profiles[profile]) if isinstance(profiles.get(profile), dict) else {}
    settings.update({key[len("MODAL_"):].lower(): value for key, value in environ.items() if key.startswith("MODAL_")})
    settings["config_path"] = str(path)
    return settings


def credentials_problem(environ: dict[str, str] | None = None) -> str | None:
    """None when Modal credentials are configured (token or OAuth), else a one-line message."""
    try:
        settings = modal_settings(environ)
    except (OSError, ValueError) as exc:  # unreadable file, TOML syntax error
        return f"cannot read the Modal config ({exc}): fix it or run `modal setup`"
    has_token = settings.get("token_id") and settings.get("token_secret")
    has_oauth = settings.get("oauth_refresh_token") and settings.get("oauth_client_id") and (
        settings.get("oauth_client_secret") or settings.get("oauth_jwt_key"))
    if has_token or has_oauth:
        return None
    return (f"no Modal token found (MODAL_TOKEN_ID/MODAL_TOKEN_SECRET or a profile in {settings['config_path']}): "
            "run `modal setup` first")


def connection_problem(timeout_s: float = PROBE_TIMEOUT_S, environ: dict[str, str] | None = None) -> str | None:
    """None when one of Modal's API servers accepts a TCP connection within timeout_s, else a one-line message."""
    server_url = str(modal_settings(environ).get("server_url") or DEFAULT_SERVER_URL)
    targets = []
    for url in server_url.split(","):
        parts = urlsplit(url.strip())
        if parts.hostname:
            targets.append((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    outcomes: queue.Queue[str | None] = queue.Queue()

    def probe(host: str, port: int) -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcomes.put(None)
        except OSError as exc:
            outcomes.put(f"{host}:{port}: {exc}")

    for host, port in targets:  # daemon threads: a hanging DNS lookup cannot hold us past the deadline
        threading.Thread(target=probe, args=(host, port), daemon=True).start()
    deadline, errors = time.monotonic() + timeout_s, []
    while len(errors) < len(targets):
        try:
            error = outcomes.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            errors.append(f"no answer in {timeout_s:g}s")
            break
        if error is None:
            return None
        errors.append(error)
    return f"cannot reach Modal ({'; '.join(errors) or 'no server_url'}): check the network, then retry"


def preflight_problem(environ: dict[str, str] | None = None) -> str | None:
    """Credentials first (instant, no network), then reachability."""
    return credentials_problem(environ) or connection_problem(environ=environ)


def _launched_by_modal_cli() -> bool:
    """True while `modal run/deploy/serve` imports this file on the local machine."""
    launcher = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return launcher.name == "modal" or launcher.parent.name == "modal"


_is_local = os.environ.get("MODAL_IS_REMOTE") != "1"
_wants_help = __name__ == "__main__" and bool({"-h", "--help"} & set(sys.argv[1:]))
if _is_local and not _wants_help and (__name__ == "__main__" or _launched_by_modal_cli()):
    if _problem := preflight_problem():
        sys.exit(f"modal_train.py: {_problem}")

import modal  # noqa: E402  (after the preflight, which must not wait for this import)

# ---------------------------------------------------------------------------
# Train body: plain functions, the same locally and inside the container
# ---------------------------------------------------------------------------

def parse_summary(text: str) -> dict[str, str]:
    """The `key: value` lines right after the last `---` line, up to the first line that is not one (raw strings).

    A text value counts only in train.py's aligned value column, so what other programs print after the
    summary (`nanobind: leaked 3 instances!`) never becomes a key; numbers count anywhere.
    """
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "---"]
    if not starts:
        return {}
    summary = {}
    for line in lines[starts[-1] + 1:]:
        match = SUMMARY_LINE.fullmatch(line.strip())
        if match is None or (not _is_number(match.group(2)) and match.start(2) < SUMMARY_VALUE_COLUMN):
            break
        summary[match.group(1)] = match.group(2).strip()
    return summary


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _child_env(cache_dir: str | Path, overrides: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in (overrides or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"env overrides must map str to str, got {key!r}: {value!r}")
        env[key] = value
    env["PYTHONUNBUFFERED"] = "1"  # without it the log stays empty for seconds, then jumps
    env["AUTORESEARCH_CACHE"] = str(cache_dir)
    return env


def _stop_process_group(proc: subprocess.Popen, grace_s: float) -> None:
    """SIGTERM the whole process group, SIGKILL whatever is left after grace_s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader so the group can empty
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_train_source(train_source: str, cache_dir: str | Path, timeout_s: float,
                     env: dict[str, str] | None = None, *, prepare_path: str | Path = PREPARE_PATH,
                     kill_grace_s: float = KILL_GRACE_S) -> Generator[str, None, dict]:
    """Run train.py source text beside a copy of prepare.py, yielding raw output text as it arrives.

    Chunks are raw text, not split into lines, so `\\r` step lines stay intact. The generator's return
    value is {"exit_code": int, "summary": dict}; exit_code is 124 when the hard timeout killed the
    run. Closing the generator early stops train.py's whole process group.
    """
    prepare_path = Path(prepare_path)
    if not prepare_path.is_file():
        raise FileNotFoundError(f"{prepare_path} not found: train.py imports prepare.py")
    with tempfile.TemporaryDirectory(prefix="autoresearch-run-") as workdir:
        (Path(workdir) / "train.py").write_text(train_source, encoding="utf-8")
        shutil.copyfile(prepare_path, Path(workdir) / "prepare.py")
        proc = subprocess.Popen([sys.executable, "train.py"], cwd=workdir, env=_child_env(cache_dir, env),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        deadline, exited_at, timed_out, tail = time.monotonic() + timeout_s, None, False, ""
        try:
            while True:
                now = time.monotonic()
                if exited_at is None and proc.poll() is not None:
                    exited_at = now
                if exited_at is not None and now - exited_at > DRAIN_GRACE_S:
                    break  # train.py is done; a straggler child still holds the pipe
                if exited_at is None and now >= deadline:
                    timed_out = True
                    break
                wait_s = POLL_INTERVAL_S if exited_at is not None else min(POLL_INTERVAL_S, deadline - now)
                ready, _, _ = select.select([proc.stdout], [], [], wait_s)
                if not ready:
                    continue
                data = os.read(proc.stdout.fileno(), READ_SIZE)
                if not data:
                    break
                text = decoder.decode(data)
                if text:
                    tail = (tail + text)[-TAIL_CHARS:]
                    yield text
        finally:
            _stop_process_group(proc, kill_grace_s)
            proc.stdout.close()
        if timed_out:
            notice = f"\nTIMEOUT: train.py ran past the {timeout_s:g}s hard limit; its process group was killed\n"
            yield notice
            return {"exit_code": 124, "summary": parse_summary(tail)}
        text = decoder.decode(b"", final=True)
        if text:
            tail += text
            yield text
        return {"exit_code": proc.wait(), "summary": parse_summary(tail)}


def data_problem(cache_dir: str | Path) -> str | None:
    """None when cache_dir holds a tokenizer and at least two shards (train + val), else what to run."""
    cache = Path(cache_dir)
    tokenizer_ready = all((cache / "tokenizer" / name).is_file() for name in ("tokenizer.pkl", "token_bytes.pt"))
    shards = list((cache / "data").glob("*.parquet")) if (cache / "data").is_dir() else []
    if tokenizer_ready and len(shards) >= 2:
        return None
    return f"no prepared data in volume {VOLUME_NAME!r}: run `modal run modal_train.py::prepare` once"


def stream_experiment(train_source: str, cache_dir: str | Path, timeout_s: float = TRAIN_TIMEOUT_S,
                      env: dict[str, str] | None = None) -> Iterator[str | dict]:
    """The body of the Modal `train` function: output text chunks, then one result dict last."""
    if problem := data_problem(cache_dir):
        yield problem + "\n"
        yield {"exit_code": 1, "summary": {}}
        return
    timeout_s = min(float(timeout_s), MAX_FUNCTION_TIMEOUT_S - 60)
    result = yield from run_train_source(train_source, cache_dir, timeout_s, env)
    yield result

# ---------------------------------------------------------------------------
# Modal app: image, volume, functions
# ---------------------------------------------------------------------------

def bake_fa3(dest: str = FA3_DIR) -> str:
    """Image build step: fetch the FA3 build for the image's torch once, so runs never reach the kernel hub."""
    from kernels import install_kernel
    variant = install_kernel(FA3_KERNEL, version=FA3_KERNEL_VERSION, backend="cuda")
    shutil.copytree(variant, dest, dirs_exist_ok=True)
    return dest


app = modal.App(APP_NAME)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
image = (
    modal.Image.debian_slim(python_version=PYTHON_VERSION)
    .uv_pip_install(f"torch=={TORCH_VERSION}", *TRAINING_PACKAGES)
    .run_function(bake_fa3)
    .env({"AUTORESEARCH_FA3_DIR": FA3_DIR})
    .add_local_file(PREPARE_PATH, REMOTE_PREPARE_PATH)
)


@app.function(image=image, volumes={CACHE_MOUNT: volume}, cpu=PREPARE_CPUS, memory=PREPARE_MEMORY_MB,
              timeout=PREPARE_TIMEOUT_S)
def prepare(num_shards: int = NUM_SHARDS) -> str:
    """Fill the volume once: download climbmix shards, train the tokenizer, commit."""
    if data_problem(CACHE_MOUNT) is None:
        return f"volume {VOLUME_NAME!r} already prepared"
    subprocess.run([sys.executable, REMOTE_PREPARE_PATH, "--num-shards", str(num_shards)],
                   env=_child_env(CACHE_MOUNT, None), check=True)
    volume.commit()
    return f"volume {VOLUME_NAME!r} prepared with {num_shards} training shards"


@app.function(image=image, gpu=GPU_TYPE, volumes={CACHE_MOUNT: volume}, timeout=MAX_FUNCTION_TIMEOUT_S)
def train(train_source: str, env: dict[str, str] | None = None,
          timeout_s: float = TRAIN_TIMEOUT_S) -> Iterator[str | dict]:
    """Run one experiment's train.py source on the GPU: output chunks as they come, then the result dict."""
    yield from stream_experiment(train_source, CACHE_MOUNT, timeout_s, env)

# ---------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------

def read_train_source(train_path: str | Path) -> str:
    """The text of train_path, or exit with one line saying it is missing."""
    path = Path(train_path)
    if not path.is_file():
        sys.exit(f"modal_train.py: {path} not found")
    return path.read_text(encoding="utf-8")


def run_and_print(train_source: str, timeout_s: float, num_shards: int) -> int:
    """Prepare the volume if needed, stream one run of train_source to stdout; return its exit code."""
    print(prepare.remote(num_shards), flush=True)
    result: dict = {"exit_code": 1, "summary": {}}
    for item in train.remote_gen(train_source, None, timeout_s):
        if isinstance(item, dict):
            result = item
        else:
            sys.stdout.write(item)
            sys.stdout.flush()
    return int(result["exit_code"])


@app.local_entrypoint()
def main(train_path: str = "train.py", timeout: float = TRAIN_TIMEOUT_S, num_shards: int = NUM_SHARDS) -> None:
    """`modal run modal_train.py`: fill the volume if needed, then train train_path on GPU_TYPE."""
    exit_code = run_and_print(read_train_source(train_path), timeout, num_shards)
    if exit_code:
        sys.exit(exit_code)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Train one train.py on a Modal GPU.")
    parser.add_argument("--train-path", default="train.py", help="train.py to run (default: ./train.py)")
    parser.add_argument("--timeout", type=float, default=TRAIN_TIMEOUT_S, help="hard limit in seconds")
    parser.add_argument("--num-shards", type=int, default=NUM_SHARDS, help="shards for a first `prepare`")
    args = parser.parse_args()
    source = read_train_source(args.train_path)
    with modal.enable_output(), app.run():
        code = run_and_print(source, args.timeout, args.num_shards)
    sys.exit(code)
