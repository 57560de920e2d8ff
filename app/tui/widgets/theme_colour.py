"""Theme colours for widgets that draw their own (plotext plots, diff signs), and legibility:
contrast, what a 256-colour terminal shows, black or white text on a coloured block.

ANSI themes hold values like `ansi_default 50%` that have no RGB: those fall back to the theme's
foreground, then to `fallback`, instead of raising in the middle of a redraw.
"""
from __future__ import annotations

from rich.color import Color as RichColor
from rich.color import ColorSystem
from textual.app import App
from textual.color import Color, ColorParseError


def theme_colour(app: App, variable: str, fallback: str = "white") -> Color:
    variables = app.theme_variables
    for value in (variables.get(variable, ""), variables.get("foreground", ""), fallback):
        for text in (value, value.split(" ")[0] if value else ""):
            try:
                return Color.parse(text)
            except ColorParseError:
                continue
    return Color.parse(fallback)


def theme_rgb(app: App, variable: str, fallback: str = "white") -> tuple[int, int, int]:
    return theme_colour(app, variable, fallback).rgb


def _luminance(rgb: tuple[int, int, int]) -> float:
    lin = [(c / 255) / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """WCAG contrast ratio of two colours (1 to 21)."""
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def in_256(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """What a 256-colour terminal (tmux's default) shows for a truecolor value."""
    triplet = RichColor.from_rgb(*rgb).downgrade(ColorSystem.EIGHT_BIT).get_truecolor()
    return triplet.red, triplet.green, triplet.blue


def legible_on(block: Color) -> Color:
    """Black or white, whichever reads better on `block` in truecolor and in 256 colours alike."""
    shown = (block.rgb, in_256(block.rgb))
    return max((Color(0, 0, 0), Color(255, 255, 255)),
               key=lambda text: min(contrast(text.rgb, rgb) for rgb in shown))
