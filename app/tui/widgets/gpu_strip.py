"""The GPU strip: one cell per pooled device (holder; utilisation now and the share of the last
hour it held a run), and the queue length. Two lines; eight GPUs fit in 80 columns.

An idle device with a low duty cycle is shown in the warning colour: a GPU idle overnight is the
expensive failure. The data comes from the poller (app/ledger/pool.py); nothing is read here.
"""
from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.widgets import Static

from app.ledger.pool import DeviceView, PoolView
from app.logs.textsafe import sanitize

LABEL_WIDTH = 5  # "GPUs " over "q 2  "
MIN_CELL = 9  # 8 characters of content and a space: 5 + 8 x 9 = 77 columns
LOW_DUTY = 0.5  # an idle device that held runs less than this share of the hour: warning colour
TOOLTIP = ("GPU pool: each device with the agent holding it; below, utilisation now (NVML) and "
           "the share of the last hour it held a run. q: runs waiting for a device.")


def _short(slot: str) -> str:
    return slot.replace("modal:", "m") if slot.startswith("modal:") else slot[:8]


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f}%"


class GpuStrip(Static):
    """Shown only when the ledger knows a pool; `show` redraws only when the cells change."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"gpu-strip--label", "gpu-strip--busy", "gpu-strip--idle",
                                              "gpu-strip--low", "gpu-strip--queue"}

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, classes="-empty")
        self.tooltip = TOOLTIP
        self._view: PoolView | None = None
        self._rendered: tuple | None = None

    def show(self, view: PoolView | None) -> None:
        self._view = view
        self.set_class(view is None or not view.devices, "-empty")
        self._redraw()

    def on_resize(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        view = self._view
        if view is None or not view.devices:
            return
        key = (self.size.width, tuple((d.slot, d.agent, d.experiment_id, d.util_pct,
                                       round(d.duty, 2)) for d in view.devices), len(view.queue))
        if key != self._rendered:
            self._rendered = key
            self.update(self.cells(view, self.size.width or 80))

    def _style(self, name: str):
        return self.get_component_rich_style(f"gpu-strip--{name}", partial=True)

    def cells(self, view: PoolView, width: int) -> Text:
        devices = view.devices
        cell = max(MIN_CELL, (width - LABEL_WIDTH) // max(1, len(devices)))
        fit = max(1, (width - LABEL_WIDTH) // cell)
        shown = devices[:fit]
        top = Text("GPUs".ljust(LABEL_WIDTH), style=self._style("label"), no_wrap=True)
        queue = f"q {len(view.queue)}" if view.queue else ""
        bottom = Text(queue.ljust(LABEL_WIDTH), style=self._style("queue"), no_wrap=True)
        for device in shown:
            tone = self._tone(device)
            holder = sanitize(device.agent) or (f"#{device.experiment_id}"
                                                if device.experiment_id else "idle")
            top.append(f"{_short(device.slot)} {holder}"[: cell - 1].ljust(cell),
                       style=self._style(tone))
            reading = f"{_percent(device.util_pct):>4}{_percent(device.duty * 100):>4}"
            bottom.append(reading[: cell - 1].ljust(cell), style=self._style(tone))
        if len(shown) < len(devices):
            top.append(f"+{len(devices) - len(shown)}", style=self._style("label"))
        return Text("\n").join([top, bottom])

    @staticmethod
    def _tone(device: DeviceView) -> str:
        if device.experiment_id is not None:
            return "busy"
        return "low" if device.duty < LOW_DUTY else "idle"
