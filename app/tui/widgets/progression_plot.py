"""val_bpb progression for one tag, upstream's progress.png live: every measured run as a point
coloured by decision (a marker per decision too), the running best of kept runs as a step line."""
from __future__ import annotations

from textual.color import Color
from textual_plotext import PlotextPlot

from app.tui.poller import Progression

SERIES = (  # label, states, theme variable, marker
    ("discard", ("discard", "repeat"), "foreground-muted", "•"),
    ("pending", ("pending",), "warning", "◆"),
    ("keep", ("keep",), "success", "●"),
)
SERIES_OF = {state: label for label, states, _, _ in SERIES for state in states}
TOP_QUANTILE = 0.95  # the y axis stops here so one bad run does not flatten the rest ...
CLIP_FROM_POINTS = 20  # ... once there are this many points


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


class ProgressionPlot(PlotextPlot):
    """Redrawn only when the poller hands over a different Progression."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._progression: Progression | None = None

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._draw())
        self._draw()

    def show(self, progression: Progression | None) -> None:
        if progression is self._progression:
            return
        self._progression = progression
        self._draw()

    def _colour(self, variable: str) -> tuple[int, int, int]:
        return Color.parse(self.app.theme_variables.get(variable, "white")).rgb

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        progression = self._progression
        if progression is None or not progression.points:
            tag = f" · {progression.tag}" if progression else ""
            plt.title(f"val_bpb{tag}: no measured runs yet")
            self.refresh()
            return
        values = sorted(y for _, y, _ in progression.points)
        low, high = values[0], values[-1]
        if len(values) >= CLIP_FROM_POINTS:
            high = values[int(TOP_QUANTILE * (len(values) - 1))]
        pad = max(high - low, 0.001) * 0.08
        top = high + pad
        if progression.best_steps:
            xs, ys = step_line(progression.best_steps)
            plt.plot(xs, ys, marker="braille", color=self._colour("accent"), label="best")
        series: dict[str, tuple[list[int], list[float]]] = {state: ([], []) for state in SERIES_OF}
        for x, y, state in progression.points:
            # points above the axis are left out (plotext's legend breaks on an all-hidden series)
            if state in series and y <= top:
                series[state][0].append(x)
                series[state][1].append(y)
        for label, states, variable, marker in SERIES:
            xs = [x for state in states for x in series[state][0]]
            ys = [y for state in states for y in series[state][1]]
            if xs:
                plt.scatter(xs, ys, marker=marker, color=self._colour(variable), label=label)
        plt.ylim(low - pad, top)
        plt.xlim(0, progression.total + 1)
        step = max(1, progression.total // 5)
        plt.xticks(list(range(0, progression.total + 1, step)))
        above = sum(y > top for y in values)
        off_scale = f" ({above} above the axis)" if above else ""
        plt.title(f"val_bpb · {progression.tag} · {progression.total} runs{off_scale}")
        plt.xlabel("experiment #")
        self.refresh()
