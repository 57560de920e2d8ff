"""val_bpb progression for one tag, upstream's progress.png live: every measured run as a point
coloured by decision (a marker per decision too) at its experiment id, the running best of kept
runs as a step line; the legend is a line above the plot, never over the data."""
from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.color import Color
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from app.logs.textsafe import sanitize
from app.tui.poller import Progression
from app.tui.widgets.theme_colour import theme_rgb

SERIES = (  # label, states, theme variable, marker
    ("discard", ("discard", "repeat"), "foreground-muted", "•"),
    ("pending", ("pending",), "text-warning", "◆"),
    ("keep", ("keep",), "text-success", "●"),
)
BEST_LINE = ("best", "text-accent", "─")
SERIES_OF = {state: label for label, states, _, _ in SERIES for state in states}
TOP_QUANTILE = 0.95  # the y axis stops here so one bad run does not flatten the rest ...
CLIP_FROM_POINTS = 20  # ... once there are this many points
Y_TICKS = 5  # about this many y ticks, at round, evenly spaced values
X_TICKS = 6


def step_line(best_steps: tuple[tuple[int, float], ...]) -> tuple[list[int], list[float]]:
    """(x, best) change points -> the points of a horizontal-then-vertical step line."""
    xs: list[int] = []
    ys: list[float] = []
    for x, y in best_steps:
        if ys:
            xs.append(x)
            ys.append(ys[-1])
        xs.append(x)
        ys.append(y)
    return xs, ys


def nice_step(span: float, count: int) -> float:
    """A round step (1, 2, 2.5 or 5 times a power of ten) giving about `count` ticks over `span`."""
    raw = max(span, 1e-9) / max(1, count)
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def even_ticks(low: float, high: float, count: int) -> list[float]:
    """Evenly spaced round values inside [low, high]."""
    step = nice_step(high - low, count)
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def tick_labels(ticks: list[float]) -> list[str]:
    """The same number of decimals for every tick: as many as the step needs."""
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    decimals = next(d for d in range(10) if abs(round(step, d) - step) < step * 1e-6 or d == 9)
    return [f"{t:.{decimals}f}" for t in ticks]


class ProgressionPlot(Vertical):
    """A legend line over a plotext plot; redrawn only when the poller hands over a new Progression."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._progression: Progression | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="progression-legend")
        yield PlotextPlot(id="progression-canvas")

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())
        self._draw()

    def show(self, progression: Progression | None) -> None:
        if progression is self._progression:
            return
        self._progression = progression
        self._draw()

    def _colour(self, variable: str) -> tuple[int, int, int]:
        return theme_rgb(self.app, variable)

    def _legend(self, progression: Progression | None, above: int) -> Text:
        if progression is None or not progression.points:
            return Text("")
        text = Text()
        for label, variable, marker in [BEST_LINE, *((s[0], s[2], s[3]) for s in reversed(SERIES))]:
            text.append(marker, style=Style(color=Color(*self._colour(variable)).rich_color))
            text.append(f" {label}  ")
        if above:
            text.append(f"({above} above)")
        return text

    def _title(self, progression: Progression | None) -> str:
        if progression is None:
            return "val_bpb: no measured runs yet"
        runs = f"val_bpb · {sanitize(progression.tag)} · {progression.total} runs"
        return runs if progression.points else f"{runs}, none measured yet"

    def _draw(self) -> None:
        canvas = self.query_one(PlotextPlot)
        plt = canvas.plt
        plt.clear_data()
        progression = self._progression
        plt.title(self._title(progression))
        if progression is None or not progression.points:
            self.query_one("#progression-legend", Static).update(self._legend(progression, 0))
            canvas.refresh()
            return
        values = sorted(y for _, y, _ in progression.points)
        low, high = values[0], values[-1]
        if len(values) >= CLIP_FROM_POINTS:
            high = values[int(TOP_QUANTILE * (len(values) - 1))]
        pad = max(high - low, 0.001) * 0.08
        top = high + pad
        if progression.best_steps:
            xs, ys = step_line(progression.best_steps)
            plt.plot(xs, ys, marker="braille", color=self._colour(BEST_LINE[1]))
        series: dict[str, tuple[list[int], list[float]]] = {state: ([], []) for state in SERIES_OF}
        for x, y, state in progression.points:
            if state in series and y <= top:
                series[state][0].append(x)
                series[state][1].append(y)
        for _label, states, variable, marker in SERIES:
            xs = [x for state in states for x in series[state][0]]
            ys = [y for state in states for y in series[state][1]]
            if xs:
                plt.scatter(xs, ys, marker=marker, color=self._colour(variable))
        y_ticks = even_ticks(low - pad, top, Y_TICKS)
        plt.yticks(y_ticks, tick_labels(y_ticks))
        plt.ylim(low - pad, top)
        first, last = progression.first_id, progression.last_id
        plt.xlim(first - 0.5, last + 0.5)
        step = max(1, math.ceil(nice_step(last - first, X_TICKS)))
        plt.xticks(list(range(math.ceil(first / step) * step, last + 1, step)))
        plt.xlabel("experiment id")
        above = sum(y > top for y in values)
        self.query_one("#progression-legend", Static).update(self._legend(progression, above))
        canvas.refresh()
