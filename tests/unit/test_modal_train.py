"""modal_train.py: the train body runs locally against a directory as the volume; no token fails fast."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from corehelpers import SMOKE_CONSTANTS, SMOKE_ENV, SUMMARY_KEYS, set_constants, write_corpus
from waiting import wait_for

pytestmark = pytest.mark.timeout(300)  # a broken timeout/kill path must fail, not hang the suite
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
import modal_train  # noqa: E402  (a script at the repo root, not part of the installed package)

SMOKE_RUN_ENV = {**SMOKE_ENV, "AUTORESEARCH_TIME_BUDGET": "2"}


def drain(gen):
    """All chunks a run_train_source generator yields, and its return value."""
    chunks = []
    while True:
        try:
            chunks.append(next(gen))
        except StopIteration as stop:
            return chunks, stop.value


def standin(body: str) -> str:
    """A train.py stand-in: the contract's startup line, then `body`."""
    startup = "import os, subprocess, sys, time\nprint('stand-in starting', flush=True)\n"
    return startup + textwrap.dedent(body)


def no_token_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.update(HOME=str(home), MODAL_CONFIG_PATH=str(home / ".modal.toml"))
    return env


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for our purpose
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def fake_prepare(tmp_path: Path) -> Path:
    path = tmp_path / "prepare.py"
    path.write_text("MARKER = 'prepare copied beside train.py'\n")
    return path


# ---------------------------------------------------------------------------
# parse_summary
# ---------------------------------------------------------------------------

def test_parse_summary_keeps_the_block_after_the_last_separator_in_order():
    text = ("startup\n---\nnot: this one\n\rstep 00001 (1.0%) | loss: 4.1 | remaining: 3s    "
            "\rstep 00002 (2.0%) | loss: 4.0 | remaining: 2s    \n---\nval_bpb:          0.997900\n"
            "device_name:      NVIDIA H100 80GB HBM3\nfork_extra: 7\n")
    assert list(modal_train.parse_summary(text).items()) == [
        ("val_bpb", "0.997900"), ("device_name", "NVIDIA H100 80GB HBM3"), ("fork_extra", "7")]


@pytest.mark.parametrize("noise", ["nanobind: leaked 3 instances!\n - leaked instance 0x7f of type x\n",
                                   "free-form line without a colon\n", "\n"])
def test_parse_summary_stops_at_the_first_line_that_is_not_key_value(noise):
    text = "---\nval_bpb:          0.997900\nattention:        fa3\n" + noise + "late_key:         1\n"
    assert modal_train.parse_summary(text) == {"val_bpb": "0.997900", "attention": "fa3"}


def test_parse_summary_without_separator_is_empty():
    assert modal_train.parse_summary("step 00001 | loss: 4.1\nFAIL\n") == {}


# ---------------------------------------------------------------------------
# run_train_source / stream_experiment: the body of the Modal `train` function, run here
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory) -> Path:
    """A cache filled by the real prepare.py --source at smoke scale (stands in for the Modal volume)."""
    root = tmp_path_factory.mktemp("volume")
    corpus = write_corpus(root / "corpus", n_docs=300)
    env = {**os.environ, **SMOKE_RUN_ENV, "AUTORESEARCH_CACHE": str(root / "cache")}
    done = subprocess.run([sys.executable, str(REPO / "prepare.py"), "--source", str(corpus),
                           "--num-shards", "2"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "cache"


@pytest.mark.slow
def test_train_body_against_a_local_volume_gives_the_summary_keys_of_a_local_run(smoke_cache):
    """The real train.py at smoke scale through the Modal function's body, a directory standing in for the
    volume. SUMMARY_KEYS is what a local `python train.py` prints (the core end-to-end tests pin it); one
    training run here instead of two keeps this file fast."""
    source = set_constants((REPO / "train.py").read_text(), SMOKE_CONSTANTS)
    *chunks, result = modal_train.stream_experiment(source, smoke_cache, 240, dict(SMOKE_RUN_ENV))
    output = "".join(chunks)
    assert result["exit_code"] == 0, output[-3000:]
    assert list(result["summary"]) == SUMMARY_KEYS
    assert result["summary"] == modal_train.parse_summary(output)
    assert result["summary"]["time_budget"] == "2" and result["summary"]["vocab_size"] == "512"
    assert "\rstep " in output  # step lines arrive raw, `\r` intact
    assert all(isinstance(chunk, str) for chunk in chunks)


def test_stream_experiment_on_an_unprepared_volume_names_the_prepare_command(tmp_path):
    items = list(modal_train.stream_experiment(standin("print('never runs')"), tmp_path / "empty", 30))
    assert "modal run modal_train.py::prepare" in items[0]
    assert items[-1] == {"exit_code": 1, "summary": {}}


def test_data_problem_accepts_the_layout_prepare_writes(smoke_cache):
    assert modal_train.data_problem(smoke_cache) is None


def test_run_passes_cache_overrides_and_unbuffered_output_to_train(tmp_path, fake_prepare):
    source = standin("""
        import prepare
        print(prepare.MARKER)
        for key in ("AUTORESEARCH_CACHE", "AUTORESEARCH_TIME_BUDGET", "PYTHONUNBUFFERED"):
            print(f"{key}={os.environ.get(key)}")
        print("---\\nval_bpb: 1.5\\nnum_steps: 3")
    """)
    chunks, result = drain(modal_train.run_train_source(
        source, tmp_path / "vol", 30, {"AUTORESEARCH_TIME_BUDGET": "7"}, prepare_path=fake_prepare))
    output = "".join(chunks)
    assert "prepare copied beside train.py" in output
    assert f"AUTORESEARCH_CACHE={tmp_path / 'vol'}" in output
    assert "AUTORESEARCH_TIME_BUDGET=7" in output and "PYTHONUNBUFFERED=1" in output
    assert result == {"exit_code": 0, "summary": {"val_bpb": "1.5", "num_steps": "3"}}


def test_output_streams_while_train_runs(tmp_path, fake_prepare):
    """train.py only ends once we have seen its first step line: no buffering until exit."""
    gate = tmp_path / "seen-a-step"
    source = standin(f"""
        print("\\rstep 00000 | loss: 4.0", end="")
        deadline = time.monotonic() + 30
        while not os.path.exists({str(gate)!r}) and time.monotonic() < deadline:
            time.sleep(0.05)
        print("\\ngate opened" if os.path.exists({str(gate)!r}) else "\\ngate never opened")
        print("---\\nval_bpb: 1.0")
    """)
    gen = modal_train.run_train_source(source, tmp_path, 60, prepare_path=fake_prepare)
    seen = ""
    while "\rstep 00000" not in seen:
        seen += next(gen)
    gate.touch()
    chunks, result = drain(gen)
    assert "gate opened" in seen + "".join(chunks)
    assert result["exit_code"] == 0 and result["summary"] == {"val_bpb": "1.0"}


def test_failing_train_reports_its_exit_code_and_no_summary(tmp_path, fake_prepare):
    source = standin("print('\\rstep 00001 | loss: nan', end='')\nprint('\\nFAIL')\nsys.exit(1)\n")
    chunks, result = drain(modal_train.run_train_source(source, tmp_path, 30, prepare_path=fake_prepare))
    assert "FAIL" in "".join(chunks)
    assert result == {"exit_code": 1, "summary": {}}


def test_timeout_kills_the_whole_process_group(tmp_path, fake_prepare):
    pids = tmp_path / "pids.json"
    source = standin(f"""
        import signal
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL after the grace period stops it
        child = subprocess.Popen(["sleep", "300"])
        open({str(pids)!r}, "w").write(__import__("json").dumps([os.getpid(), child.pid]))
        while True:
            print("\\rstep 00001 | loss: 4.0", end="", flush=True)
            time.sleep(0.1)
    """)
    started = time.monotonic()
    chunks, result = drain(modal_train.run_train_source(source, tmp_path, 1.5, prepare_path=fake_prepare,
                                                        kill_grace_s=0.5))
    elapsed = time.monotonic() - started
    assert result["exit_code"] == 124
    assert "TIMEOUT" in chunks[-1] and "\rstep 00001" in "".join(chunks)
    assert 1.5 <= elapsed < 15.0
    survivors = json.loads(pids.read_text())
    # SIGKILL is delivered asynchronously to the grandchild
    wait_for(lambda: not [pid for pid in survivors if alive(pid)], timeout=5.0,
             message=f"still alive: {[pid for pid in survivors if alive(pid)]}")


def test_closing_the_stream_early_stops_train(tmp_path, fake_prepare):
    pid_file = tmp_path / "pid"
    source = standin(f"""
        open({str(pid_file)!r}, "w").write(str(os.getpid()))
        while True:
            print("\\rstep 00001 | loss: 4.0", end="", flush=True)
            time.sleep(0.1)
    """)
    gen = modal_train.run_train_source(source, tmp_path, 60, prepare_path=fake_prepare)
    while "step" not in next(gen):
        pass
    gen.close()  # what a cancelled Modal input does to the generator
    assert not alive(int(pid_file.read_text()))


def test_bad_input_is_refused_before_anything_runs(tmp_path, fake_prepare):
    with pytest.raises(TypeError, match="str to str"):
        next(modal_train.run_train_source("print(1)", tmp_path, 5, {"X": 1}, prepare_path=fake_prepare))
    with pytest.raises(FileNotFoundError, match="prepare.py"):
        next(modal_train.run_train_source("print(1)", tmp_path, 5, prepare_path=tmp_path / "missing.py"))


# ---------------------------------------------------------------------------
# The image: built from this file alone, no credentials; pins agree with pyproject's `gpu` extra
# ---------------------------------------------------------------------------

def test_image_definition_builds_locally_without_credentials(tmp_path):
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import modal, modal_train; "
             "assert isinstance(modal_train.image, modal.Image); print(modal.__version__)")
    done = subprocess.run([sys.executable, "-c", probe, str(REPO)], env=no_token_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert tuple(int(part) for part in done.stdout.split(".")[:2]) >= (1, 1)  # Image.uv_pip_install


def test_image_pins_are_pyprojects_gpu_extra():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    gpu = project["project"]["optional-dependencies"]["gpu"]
    assert sorted(gpu) == sorted([f"torch=={modal_train.TORCH_VERSION}", *modal_train.TRAINING_PACKAGES])
    assert "index" not in project["tool"]["uv"]  # PyPI's Linux torch is the CUDA 12.8 build
    assert any(dep.startswith("modal>=1.1") for dep in project["project"]["dependencies"])


def test_bake_fa3_copies_the_hub_build_for_the_image(tmp_path, monkeypatch):
    """The kernel hub is out of reach here: its download is the only stand-in."""
    import kernels
    variant = tmp_path / "hub" / "build" / "torch210-cxx11-cu128-x86_64-linux"
    (variant / "flash_attn3").mkdir(parents=True)
    (variant / "metadata.json").write_text('{"version": 1}')
    (variant / "flash_attn3" / "__init__.py").write_text("")
    calls = []
    monkeypatch.setattr(kernels, "install_kernel", lambda repo, **kw: calls.append((repo, kw)) or variant)
    dest = modal_train.bake_fa3(str(tmp_path / "opt" / "fa3"))
    assert calls == [("kernels-community/flash-attn3", {"version": 1, "backend": "cuda"})]
    assert sorted(p.relative_to(dest).as_posix() for p in Path(dest).rglob("*")) == [
        "flash_attn3", "flash_attn3/__init__.py", "metadata.json"]


# ---------------------------------------------------------------------------
# Preflight: no token -> the message at once, never a minute of retries
# ---------------------------------------------------------------------------

def test_python_modal_train_without_token_fails_fast_with_the_message(tmp_path):
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "modal_train.py")], env=no_token_env(tmp_path),
                          capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "run `modal setup`" in done.stderr and str(tmp_path / ".modal.toml") in done.stderr
    assert elapsed < 2.0


def test_modal_run_without_token_stops_with_our_message(tmp_path):
    """`modal run` imports this file before it connects; the CLI's own import is most of the time."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "modal", "run", str(REPO / "modal_train.py")],
                          env=no_token_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "run `modal setup`" in done.stdout + done.stderr
    assert time.monotonic() - started < 20  # a missing or fake token must not wait ~57 s for retries


def test_fake_token_with_unreachable_api_fails_fast(tmp_path):
    env = no_token_env(tmp_path)
    env.update(MODAL_TOKEN_ID="ak-fake", MODAL_TOKEN_SECRET="as-fake",
               MODAL_SERVER_URL=f"http://127.0.0.1:{closed_port()}")
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(REPO / "modal_train.py")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "cannot reach Modal" in done.stderr
    assert time.monotonic() - started < 2.0 + modal_train.PROBE_TIMEOUT_S


def test_connection_probe_accepts_a_listening_server(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        assert modal_train.connection_problem(2.0, {"HOME": str(tmp_path), "MODAL_SERVER_URL": url}) is None


CREDENTIAL_CASES = [  # (MODAL_* environment, ~/.modal.toml text)
    ({}, None),
    ({"MODAL_TOKEN_ID": "ak-1", "MODAL_TOKEN_SECRET": "as-1"}, None),
    ({"MODAL_TOKEN_ID": "ak-1"}, None),
    ({}, '[default]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\n'),
    ({}, '[default]\ntoken_id = "ak-1"\n'),
    ({}, '[a]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\n[b]\ntoken_id = "ak-2"\nactive = true\n'),
    ({}, '[a]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\nactive = true\n[b]\ntoken_id = "ak-2"\n'),
    ({"MODAL_PROFILE": "b"}, '[a]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\nactive = true\n[b]\n'),
    ({"MODAL_TOKEN_SECRET": ""}, '[default]\ntoken_id = "ak-1"\ntoken_secret = "as-1"\n'),
    ({"MODAL_OAUTH_REFRESH_TOKEN": "r", "MODAL_OAUTH_CLIENT_ID": "c", "MODAL_OAUTH_JWT_KEY": "k"}, None),
]


def case_environ(tmp_path: Path, index: int, modal_env: dict, toml_text: str | None) -> dict[str, str]:
    config = tmp_path / f"case{index}.toml"
    if toml_text is not None:
        config.write_text(toml_text)
    return {"HOME": str(tmp_path), "MODAL_CONFIG_PATH": str(config), **modal_env}


def test_credentials_check_reads_the_config_as_modal_config_does(tmp_path):
    """Our modal-free reader agrees with modal.config on tokens, profiles and env precedence."""
    environs = [case_environ(tmp_path, i, env, text) for i, (env, text) in enumerate(CREDENTIAL_CASES)]
    probe = textwrap.dedent("""
        import importlib, json, os, sys
        import modal.config
        keys = ["token_id", "token_secret", "oauth_refresh_token", "oauth_client_id", "oauth_jwt_key"]
        found = []
        for environ in json.loads(sys.argv[1]):
            for key in [k for k in os.environ if k.startswith("MODAL_")]:
                del os.environ[key]
            os.environ.update(environ)
            config = importlib.reload(modal.config).config
            found.append({key: config.get(key) for key in keys})
        print(json.dumps(found))
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    done = subprocess.run([sys.executable, "-c", probe, json.dumps(environs)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    for environ, modal_says in zip(environs, json.loads(done.stdout)):
        ours = modal_train.modal_settings(environ)
        assert {key: ours.get(key) for key in modal_says} == modal_says, environ
    verdicts = [modal_train.credentials_problem(environ) is None for environ in environs]
    assert verdicts == [False, True, False, True, False, False, True, False, False, True]


def test_unreadable_config_is_a_one_line_message(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[default\ntoken_id = ")
    problem = modal_train.credentials_problem({"HOME": str(tmp_path), "MODAL_CONFIG_PATH": str(bad)})
    assert problem and "modal setup" in problem and "\n" not in problem
