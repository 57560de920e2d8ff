"""GPU pool parts: NVML discovery (a thin stand-in for a GPU this machine lacks), the FIFO
allocation, duty cycles, Modal slots, the schema v1 -> v2 upgrade."""
from __future__ import annotations

import json
import sys
import threading
import types
from pathlib import Path

import pytest

from app.config import Settings
from app.ledger import leases
from app.ledger.leases import Lease
from app.ledger.pool import duty_cycles, load_pool
from app.ledger.store import Ledger
from app.run.gpus import DeviceError, nvml_devices, resolve, sample
from app.run.lease import MODAL_POOL, RunLease, pool_spec
from gitrepo import commit_file
from oldledger import v1_ledger
from runnerhelpers import REPO_ROOT, agent_worktree, cli, make_project
from waiting import wait_for


class NVMLError(Exception):
    pass


def fake_pynvml(count: int, *, init_fails: bool = False) -> types.ModuleType:
    """The part of pynvml the pool calls, answering for `count` H100s (we have no GPU here)."""
    lib = types.ModuleType("pynvml")
    lib.NVMLError = NVMLError
    lib.NVML_TEMPERATURE_GPU = 0

    def init() -> None:
        if init_fails:
            raise NVMLError("Driver Not Loaded")

    lib.nvmlInit = init
    lib.nvmlShutdown = lambda: None
    lib.nvmlDeviceGetCount = lambda: count
    lib.nvmlDeviceGetHandleByIndex = lambda i: i
    lib.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"
    lib.nvmlDeviceGetUUID = lambda h: f"GPU-0000000{h}-aaaa"
    lib.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=90 + h)
    lib.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(used=2**30, total=80 * 2**30)

    def temperature(h: int, sensor: int) -> int:
        raise NVMLError("Not Supported")

    lib.nvmlDeviceGetTemperature = temperature
    return lib


def test_no_driver_means_no_devices_and_no_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(2, init_fails=True))
    assert nvml_devices() is None and resolve("auto") == []
    assert [d.id for d in resolve(["0", "5"])] == ["0", "5"]  # declared: taken at its word
    assert pool_spec(Settings(), "local") is None  # "auto" without NVML: today's behaviour


def test_nvml_devices_auto_and_declared(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(2))
    auto = resolve("auto")
    assert [(d.id, d.index, d.model) for d in auto] == [("0", 0, "NVIDIA H100 80GB HBM3"),
                                                         ("1", 1, "NVIDIA H100 80GB HBM3")]
    assert auto[1].cuda_id == "GPU-00000001-aaaa"  # CUDA's own order may differ from NVML's
    by_uuid = resolve(["GPU-00000001-aaaa"])
    assert by_uuid[0].index == 1 and by_uuid[0].id == "GPU-00000001-aaaa"
    with pytest.raises(DeviceError, match="declared device '7' does not exist"):
        resolve(["0", "7"])
    stats = sample(auto)
    assert stats["1"].util_pct == 91 and stats["1"].mem_total_mb == 80 * 1024
    assert stats["1"].temp_c is None  # a reading the GPU does not report is left out


def test_declared_device_missing_on_an_nvml_machine_refuses_the_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(2))
    main = make_project(tmp_path, config='gpus = ["0", "3"]')
    wt = agent_worktree(main, "alice")
    code, _, err = cli("run", "-m", "x", cwd=wt)
    assert code == 2 and "declared device '3' does not exist" in err
    assert len(err.strip().splitlines()) == 1
    with Ledger(main / ".autoresearch" / "ledger.db") as db:
        assert db.experiments() == []  # refused before anything was registered


def _lease(id: int, state: str = "queued", slots: str = "") -> Lease:
    return Lease(id=id, pool="local", state=state, requested_at=0.0, slots=slots)


def test_allocation_is_strict_fifo() -> None:
    held = [_lease(1, "held", "0")]
    queue = [_lease(2), _lease(3), _lease(4)]
    assert leases.allocate(["0", "1", "2"], held, queue, 1) == {2: ["1"], 3: ["2"]}
    assert leases.allocate(["0", "1", "2"], held, queue, 2) == {2: ["1", "2"]}
    assert leases.allocate(["0", "1"], held, queue, 2) == {}  # the head waits, nobody overtakes
    assert leases.allocate(["0", "1"], [_lease(9, "held", "5")], queue, 1) == {2: ["0"], 3: ["1"]}


def test_duty_cycle_counts_overlaps_once_and_only_the_window() -> None:
    now = 10_000.0
    history = [Lease(1, "local", "released", 0, "0", acquired_at=now - 7200, released_at=now - 3000),
               Lease(2, "local", "released", 0, "0", acquired_at=now - 3100, released_at=now - 1800),
               Lease(3, "local", "held", 0, "0,1", acquired_at=now - 900)]
    duty = duty_cycles(history, now)
    assert duty[("local", "0")] == pytest.approx((1800 + 900) / 3600)
    assert duty[("local", "1")] == pytest.approx(0.25)


def test_modal_slots_cap_runs_in_flight(tmp_path) -> None:
    spec = pool_spec(Settings(modal_max_concurrent=1), "modal")
    assert spec is not None and spec.pool == MODAL_POOL and spec.slots == ["modal:0"]
    assert pool_spec(Settings(), "modal") is None  # 0: no cap
    path = tmp_path / "ledger.db"
    db = Ledger(path)
    first_id, second_id = (db.register(description=d) for d in ("first", "second"))
    first = RunLease(db, spec, first_id, "a", announce=lambda _: None)
    assert first.acquire(lambda poll: None) is None and first.env == {}
    said: list[str] = []
    done = threading.Event()

    def second_run() -> None:
        with Ledger(path) as db2:
            RunLease(db2, spec, second_id, "b", said.append).acquire(lambda poll: None)
            done.set()

    thread = threading.Thread(target=second_run)
    thread.start()
    wait_for(lambda: said, timeout=10)
    assert "queued for a Modal slot: place 1 of 1" in said[0] and not done.is_set()
    first.release()
    assert done.wait(10)
    thread.join()
    with db:
        assert db.get(second_id).gpu_ids == "modal:0" and db.get(second_id).status == "queued"
        assert [d.slot for d in load_pool(db).devices] == ["modal:0"]


def test_a_v1_ledger_upgrades_to_the_pool_schema(tmp_path: Path) -> None:
    path = v1_ledger(tmp_path / "old.db", [{"created_at": 1.0, "description": "old run"}])
    with Ledger(path) as db:
        old = db.get(1)
        assert old.description == "old run" and old.gpu_ids == "" and old.gpu_model == ""
        assert leases.active(db) == [] and leases.devices(db) == []


def test_a_modal_run_leases_one_of_the_modal_slots(tmp_path, monkeypatch, cloud, clean_env) -> None:
    main = make_project(tmp_path / "p")
    wt = agent_worktree(main, "alice")
    commit_file(wt, "modal_train.py", (REPO_ROOT / "modal_train.py").read_text(), "modal")
    (main / ".autoresearch").mkdir(exist_ok=True)
    (main / ".autoresearch" / "config.toml").write_text("modal_max_concurrent = 2\n")
    code, out, err = cli("run", "-m", "on the cloud", "--backend", "modal", "--json", cwd=wt)
    assert code == 0, err
    with Ledger(main / ".autoresearch" / "ledger.db") as db:
        exp = db.get(json.loads(out)["id"])
        assert (exp.decision, exp.gpu_ids, exp.gpu_model) == ("keep", "modal:0", "H100")
        assert leases.active(db) == []
    code, out, _ = cli("gpus", "--json", cwd=main)
    (modal,) = [p for p in json.loads(out)["pools"] if p["pool"] == "modal"]
    assert [d["id"] for d in modal["devices"]] == ["modal:0", "modal:1"]
    assert modal["devices"][0]["duty_1h"] > 0 and modal["devices"][1]["duty_1h"] == 0


def test_nvml_pool_hands_uuids_to_cuda_and_samples_the_held_device(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(2))
    spec = pool_spec(Settings(), "local")  # gpus = "auto": both devices NVML sees
    assert spec is not None and spec.slots == ["0", "1"]
    with Ledger(tmp_path / "ledger.db") as db:
        exp_id = db.register(description="on a GPU")
        lease = RunLease(db, spec, exp_id, "a", announce=lambda _: None)
        assert lease.acquire(lambda poll: None) is None
        assert lease.env["CUDA_VISIBLE_DEVICES"] == "GPU-00000000-aaaa"
        assert db.get(exp_id).gpu_model == "NVIDIA H100 80GB HBM3"
        device = wait_for(lambda: next((d for d in load_pool(db).devices
                                        if d.slot == "0" and d.util_pct is not None), None))
        assert (device.util_pct, device.agent, device.experiment_id) == (90, "a", exp_id)
        assert device.mem_total_mb == 80 * 1024
        lease.release()
        assert leases.active(db) == []
