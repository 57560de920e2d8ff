"""The runner's side of the GPU pool: queue for devices, hold them while train.py runs, release.

A local run leases `gpus_per_run` devices and hands them to train.py as CUDA_VISIBLE_DEVICES; a
Modal run leases one of `modal_max_concurrent` virtual slots. While no device is free the run is
`queued` (FIFO): it looks at the ledger every WAKE_S (a cheap `PRAGMA data_version` while nothing
changes), so a released device is taken within a fraction of a second, and every RECLAIM_S it
checks that the holders are alive: a lease whose runner (pid + start time) is gone, and whose
training process is gone too, is reclaimed. An orphaned training process (its runner was
SIGKILLed) is stopped first: it would still be using the device.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.config import Settings
from app.errors import UsageError
from app.ledger import leases
from app.ledger.leases import Lease
from app.ledger.store import Ledger
from app.run.gpus import Device, DeviceError, resolve, sample
from app.run.procs import process_identity, same_process, stop_if_same

LOCAL_POOL, MODAL_POOL = "local", "modal"
WAKE_S = 0.05  # a queued run looks at the ledger this often
RECLAIM_S = 1.0  # ... and checks the holders' processes this often
KILL_POLL_S = 0.5  # ... and its own kill request this often
ORPHAN_GRACE_S = 2.0  # TERM, then KILL, an orphaned training process after this long
SAMPLE_S = 2.0  # NVML readings of held devices, into the ledger for `cockpit gpus` and the TUI


class PoolError(UsageError):
    """The pool as configured cannot serve this run (a device that is not there, too few)."""


@dataclass(frozen=True)
class PoolSpec:
    pool: str  # local | modal
    devices: tuple[Device, ...]
    per_run: int

    @property
    def slots(self) -> list[str]:
        return [d.id for d in self.devices]


def pool_spec(settings: Settings, backend: str) -> PoolSpec | None:
    """The pool a run on `backend` leases from; None when there is none (today's behaviour)."""
    if backend == "modal":
        n = settings.modal_max_concurrent
        return PoolSpec(MODAL_POOL, tuple(Device(f"modal:{i}", settings.modal_gpu)
                                          for i in range(n)), 1) if n > 0 else None
    try:
        devices = resolve(settings.gpus)
    except DeviceError as exc:
        raise PoolError(str(exc)) from exc
    if not devices:
        return None
    if settings.gpus_per_run > len(devices):
        raise PoolError(f"gpus_per_run = {settings.gpus_per_run} but the pool has "
                        f"{len(devices)} device(s): no run could ever start")
    return PoolSpec(LOCAL_POOL, tuple(devices), settings.gpus_per_run)


def holder_gone(lease: Lease) -> bool:
    """True when neither the lease's runner nor its training process is alive any more."""
    return (not same_process(lease.holder_pid, lease.holder_start)
            and not same_process(lease.child_pid, lease.child_start))


def stop_orphans(ledger: Ledger) -> list[int]:
    """Stop training processes whose runner is gone but which still hold a leased device."""
    stopped = []
    for lease in leases.active(ledger):
        if (lease.state == "held" and not same_process(lease.holder_pid, lease.holder_start)
                and stop_if_same(lease.child_pid, lease.child_start, ORPHAN_GRACE_S)):
            stopped.append(lease.id)
    return stopped


def reclaim_lost(ledger: Ledger) -> list[Lease]:
    """Return the devices of runners that died (the reaper's and every acquirer's duty)."""
    if ledger.read_only:
        return []
    stop_orphans(ledger)
    return leases.reclaim(ledger, holder_gone)


class RunLease:
    """One run's lease: `acquire` waits its turn, `release` (idempotent) gives the devices back."""

    def __init__(self, ledger: Ledger, spec: PoolSpec | None, exp_id: int, agent: str,
                 announce: Callable[[str], None]) -> None:
        self.ledger = ledger
        self.spec = spec
        self.exp_id = exp_id
        self.agent = agent
        self.announce = announce
        self.lease_id: int | None = None
        self.env: dict[str, str] = {}
        self._sampler: threading.Thread | None = None
        self._stop_sampling = threading.Event()

    def acquire(self, stop: Callable[[bool], str | None]) -> str | None:
        """Wait for devices. None once they are ours (or there is no pool); else the reason the
        wait was given up (`stop(poll_ledger)` returned one: a kill request, a signal)."""
        spec = self.spec
        if spec is None:
            return None
        leases.announce_devices(self.ledger, spec.pool, [(d.id, d.model) for d in spec.devices])
        pid = os.getpid()
        self.lease_id = leases.enqueue(self.ledger, pool=spec.pool, experiment_id=self.exp_id,
                                       agent=self.agent, holder_pid=pid,
                                       holder_start=process_identity(pid))
        version = None
        next_reclaim = next_kill_poll = 0.0
        place_shown: int | None = None
        while True:
            now = time.monotonic()
            seen = self.ledger.data_version()
            check = (seen != version and leases.would_acquire(
                self.ledger, self.lease_id, spec.slots, spec.per_run))
            if now >= next_reclaim:
                stop_orphans(self.ledger)
                next_reclaim, check = now + RECLAIM_S, True
            version = seen
            if check:
                taken = leases.try_acquire(self.ledger, self.lease_id, spec.slots, spec.per_run,
                                           holder_gone)
                if taken is not None:
                    self._hold(taken)
                    return None
            place = leases.queue_place(self.ledger, self.lease_id)
            if place[0] != place_shown:
                self._show_place(place, place_shown is None)
                place_shown = place[0]
            reason = stop(now >= next_kill_poll)
            if now >= next_kill_poll:
                next_kill_poll = now + KILL_POLL_S
            if reason:
                self.release(f"{reason} while queued")
                return reason
            time.sleep(WAKE_S)

    def _show_place(self, place: tuple[int, int], first: bool) -> None:
        assert self.spec is not None
        number, length = place
        busy = [lease for lease in leases.active(self.ledger, self.spec.pool)
                if lease.state == "held"]
        holders = ", ".join(f"{lease.slots}: #{lease.experiment_id}" for lease in busy)
        what = "a GPU" if self.spec.pool == LOCAL_POOL else "a Modal slot"
        self.announce(f"cockpit run #{self.exp_id} queued for {what}: place {number} of {length}"
                      + (f" (busy: {holders})" if holders else ""))
        if first:
            self.ledger.transition(self.exp_id, {"status": "registered"}, event="queued",
                                   detail={"place": number, "queue": length, "pool": self.spec.pool},
                                   status="queued")

    def _hold(self, taken: list[str]) -> None:
        assert self.spec is not None
        chosen = [d for d in self.spec.devices if d.id in taken]
        model = ",".join(sorted({d.model for d in chosen if d.model}))
        self.ledger.update(self.exp_id, gpu_ids=",".join(taken), gpu_model=model)
        if self.spec.pool == LOCAL_POOL:
            self.env = {"CUDA_VISIBLE_DEVICES": ",".join(d.cuda_id for d in chosen),
                        "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
            if any(d.index is not None for d in chosen):
                self._start_sampler(chosen)

    def _start_sampler(self, devices: list[Device]) -> None:
        def loop() -> None:
            with Ledger(self.ledger.path) as ledger:
                while not self._stop_sampling.is_set():
                    stats = sample(devices)
                    if stats:
                        leases.record_stats(ledger, LOCAL_POOL,
                                            {k: v.as_dict() for k, v in stats.items()})
                    self._stop_sampling.wait(SAMPLE_S)

        self._sampler = threading.Thread(target=loop, daemon=True,
                                         name=f"cockpit-gpu-sample-{self.exp_id}")
        self._sampler.start()

    def release(self, reason: str = "done") -> None:
        """Give the devices (or the place in the queue) back; safe to call more than once."""
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join(timeout=SAMPLE_S + 1)
            self._sampler = None
        if self.lease_id is not None:
            leases.release(self.ledger, self.lease_id, reason)
            self.lease_id = None
