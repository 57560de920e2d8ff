"""Loss against training progress for one run, overlaid on a reference run (the best) at the same
progress, so a human sees early whether a run is trailing. Used by the detail screen and the
dashboard's live view.

Usage:
    curve = LossCurve()
    curve.set_curves([(1.0, 9.1), (2.0, 7.4)], reference=[(1.0, 9.0), (2.0, 7.0)],
                     labels=("#12", "best #7"))
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

from textual_plotext import PlotextPlot

from app.tui.widgets.theme_colour import theme_rgb

Point = tuple[float, float]  # (progress %, loss)

MAX_POINTS = 1000  # points plotted per curve; longer curves are thinned evenly


def thin(points: Sequence[Point], limit: int = MAX_POINTS) -> list[Point]:
    """At most `limit` points, evenly spaced, always keeping the last one."""
    if len(points) <= limit:
        return list(points)
    stride = len(points) / (limit - 1)
    return [points[int(i * stride)] for i in range(limit - 1)] + [points[-1]]


def loss_at(curve: Sequence[Point], progress: float) -> float | None:
    """The curve's loss at `progress`, linearly interpolated; None outside the curve."""
    if not curve or not curve[0][0] <= progress <= curve[-1][0]:
        return None
    i = bisect_left([p for p, _ in curve], progress)
    if curve[i][0] == progress or i == 0:
        return curve[i][1]
    (p0, l0), (p1, l1) = curve[i - 1], curve[i]
    return l0 + (l1 - l0) * (progress - p0) / (p1 - p0)


def gap_to_reference(main: Sequence[Point], reference: Sequence[Point] | None) -> float | None:
    """How much higher (positive: trailing) the run's latest loss is than the reference's at the
    same progress; None when there is nothing to compare."""
    if not main or not reference:
        return None
    progress, loss = main[-1]
    ref = loss_at(reference, progress)
    return None if ref is None else loss - ref


def _by_progress(points: Sequence[Point]) -> list[Point]:
    """Complete points in progress order; steps at the same progress keep their order."""
    return sorted((p for p in points if p[0] is not None and p[1] is not None), key=lambda p: p[0])


class LossCurve(PlotextPlot):
    """A PlotextPlot with its own plot object; call set_curves() whenever the data changes."""

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.main: list[Point] = []
        self.reference: list[Point] | None = None
        self.labels: tuple[str, str] = ("this run", "best")
        self.empty_message = "no step records yet"
        self.by_step = False  # x is the step number instead of progress %

    def set_curves(self, main: Sequence[Point], reference: Sequence[Point] | None = None,
                   labels: tuple[str, str] = ("this run", "best"), by_step: bool = False) -> None:
        """Plot `main` (and `reference`, if any) as loss against progress % (against the step
        number with `by_step`: the points are then (step, loss))."""
        self.main = _by_progress(main)
        self.reference = _by_progress(reference) if reference else None
        self.labels = labels
        self.by_step = by_step
        self._replot()

    @property
    def caption(self) -> str:
        """The plot title: latest loss, and how far ahead or behind the reference it is."""
        if not self.main:
            return f"loss vs {'step' if self.by_step else 'progress'}: {self.empty_message}"
        x, loss = self.main[-1]
        at = f"step {x:.0f}" if self.by_step else f"{x:.1f}%"
        title = f"{self.labels[0]}: loss {loss:.4f} at {at}"
        gap = gap_to_reference(self.main, self.reference)
        if gap is not None:
            verdict = "trailing" if gap > 0 else "ahead of"
            title += f" · {verdict} {self.labels[1]} by {abs(gap):.4f}"
        return title

    def on_mount(self) -> None:
        super().on_mount()
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._replot())
        self._replot()

    def _theme_rgb(self, variable: str) -> tuple[int, int, int]:
        return theme_rgb(self.app, variable)

    def _replot(self) -> None:
        if not self.is_mounted:
            return
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(self.caption)
        plt.xlabel("step" if self.by_step else "progress %")
        if not self.by_step:
            plt.xlim(0, 100)
        if self.reference:
            xs, ys = zip(*thin(self.reference))
            plt.plot(list(xs), list(ys), marker="braille", label=self.labels[1],
                     color=self._theme_rgb("foreground-muted"))
        if self.main:
            xs, ys = zip(*thin(self.main))
            plt.plot(list(xs), list(ys), marker="braille", label=self.labels[0],
                     color=self._theme_rgb("text-accent"))
        self.refresh()
