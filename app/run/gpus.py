"""The machine's GPUs: found through NVML (nvidia-ml-py, imported only when asked) or declared.

No NVIDIA driver (or no nvidia-ml-py) means no devices and no error. Declared devices (`gpus =
["0", "1"]`) need no GPU at all, which is how tests and CI exercise the pool; on a machine where
NVML answers, each declared device must exist there.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from app.errors import UsageError


class DeviceError(UsageError):
    """A declared device that this machine does not have."""


@dataclass(frozen=True)
class Device:
    id: str  # the pool's name for it: an NVML index or the declared index/UUID
    model: str = ""  # NVML's name ("NVIDIA H100 80GB HBM3"); "" when declared without NVML
    uuid: str = ""  # NVML's UUID: what CUDA_VISIBLE_DEVICES gets, whatever CUDA's device order
    index: int | None = None  # NVML index

    @property
    def cuda_id(self) -> str:
        return self.uuid or self.id


@dataclass(frozen=True)
class DeviceStats:
    util_pct: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    temp_c: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        return {"util_pct": self.util_pct, "mem_used_mb": self.mem_used_mb,
                "mem_total_mb": self.mem_total_mb, "temp_c": self.temp_c}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@contextmanager
def nvml() -> Iterator[Any]:
    """pynvml, initialised, or None when there is no NVML here (no package, no driver)."""
    try:
        import pynvml  # type: ignore[import-untyped]
    except ImportError:
        yield None
        return
    try:
        pynvml.nvmlInit()
    except (pynvml.NVMLError, OSError):  # library not found, driver not loaded: no GPUs here
        yield None
        return
    try:
        yield pynvml
    finally:
        with suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()


def nvml_devices() -> list[Device] | None:
    """Every device NVML sees, in NVML's (PCI bus) order; None when NVML is not there."""
    with nvml() as lib:
        if lib is None:
            return None
        try:
            out = []
            for index in range(lib.nvmlDeviceGetCount()):
                handle = lib.nvmlDeviceGetHandleByIndex(index)
                out.append(Device(str(index), _text(lib.nvmlDeviceGetName(handle)),
                                  _text(lib.nvmlDeviceGetUUID(handle)), index))
            return out
        except lib.NVMLError:  # a driver that answers init but not queries: treat as no NVML
            return None


def resolve(setting: str | Sequence[str]) -> list[Device]:
    """The pool's devices for a `gpus` setting; DeviceError for a declared device NVML lacks."""
    if setting == "auto":
        return nvml_devices() or []
    declared = list(setting)
    if not declared:
        return []
    found = nvml_devices()
    if found is None:
        return [Device(name) for name in declared]
    by_name = {d.id: d for d in found} | {d.uuid: d for d in found if d.uuid}
    out = []
    for name in declared:
        device = by_name.get(name) or by_name.get(f"GPU-{name}")
        if device is None:
            seen = ", ".join(f"{d.id} ({d.model})" for d in found) or "none"
            raise DeviceError(f"gpus: declared device {name!r} does not exist on this machine "
                              f"(NVML sees: {seen}); fix `gpus` in [tool.cockpit]")
        out.append(Device(name, device.model, device.uuid, device.index))
    return out


def sample(devices: Sequence[Device]) -> dict[str, DeviceStats]:
    """Utilisation, memory and temperature of the devices NVML knows (by pool id); {} without NVML."""
    known = [d for d in devices if d.index is not None]
    if not known:
        return {}
    with nvml() as lib:
        return {} if lib is None else {d.id: _stats(lib, d) for d in known}


def _stats(lib: Any, device: Device) -> DeviceStats:
    def read(fn: Any) -> Any:
        try:
            return fn()
        except lib.NVMLError:  # a field this GPU or driver does not report
            return None

    handle = read(lambda: lib.nvmlDeviceGetHandleByIndex(device.index))
    if handle is None:
        return DeviceStats()
    util = read(lambda: lib.nvmlDeviceGetUtilizationRates(handle))
    mem = read(lambda: lib.nvmlDeviceGetMemoryInfo(handle))
    temp = read(lambda: lib.nvmlDeviceGetTemperature(handle, lib.NVML_TEMPERATURE_GPU))
    return DeviceStats(util_pct=None if util is None else float(util.gpu),
                       mem_used_mb=None if mem is None else mem.used / 2**20,
                       mem_total_mb=None if mem is None else mem.total / 2**20,
                       temp_c=None if temp is None else float(temp))
