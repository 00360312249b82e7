"""The house style of every figure: palette, colour scales, template, and small shared helpers.

Colours: the Okabe-Ito palette (`COLORS`) for categories, RdBu (`DIVERGING`, centred on zero) for
signed values, Viridis (`SEQUENTIAL`) for scores and accuracies, `GREY` for references; all stay
distinguishable under common colour-vision deficiencies. Every builder ends with `_finish`, which
applies `TEMPLATE`, the title and the size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

if TYPE_CHECKING:
    from ..collect import Differences
    from ..mask import Mask

COLORS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
"""Okabe-Ito colours (blue, orange, green, purple, sky blue, vermillion, yellow, black)."""
DIVERGING = "RdBu_r"
SEQUENTIAL = "Viridis"
GREY = "#7f7f7f"
WIDTH, HEIGHT = 900, 600
SYMBOLS = ("circle", "square", "diamond", "triangle-up")
"""Marker symbols for successive lines, so that lines differ in more than colour."""

PROTOCOLS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "full-vocabulary accuracy", COLORS[0]),
    ("restricted", "restricted to the options", COLORS[1]),
    ("paper", "papers' string match", COLORS[2]),
)
"""The scoring protocols: (metric key, legend name, colour), in drawing order. A figure leaves
out a protocol its rows do not carry (records written before `paper` existed)."""

TEMPLATE = go.layout.Template(pio.templates["simple_white"])
TEMPLATE.layout.update(
    font={"family": "Arial, Helvetica, sans-serif", "size": 13},
    colorway=list(COLORS),
    title={"x": 0.02, "xanchor": "left", "font": {"size": 16}},
    margin={"l": 70, "r": 30, "t": 80, "b": 60},
    legend={"bgcolor": "rgba(255,255,255,0.7)"},
    shapedefaults={"line": {"width": 2}, "opacity": 1},  # simple_white's are invisible lines
)


def _finish(fig: go.Figure, title: str, *, width: int = WIDTH, height: int = HEIGHT) -> go.Figure:
    """Apply the house template, `title` and the size; returns `fig`."""
    fig.update_layout(template=TEMPLATE, title_text=title, width=width, height=height)
    return fig


def _pct(x: Any) -> np.ndarray:
    """Fractions as percentages (a float array)."""
    return 100 * np.asarray(x, dtype=float)


def _metric_name(metric: str) -> str:
    return "restricted accuracy" if metric == "restricted" else metric


def _about(obj: Differences | Mask) -> str:
    """ "task, model" (or just the model) for titles."""
    task = f"{obj.task}, " if obj.task else ""
    return f"{task}{obj.model_name}"


def _where(task: str | None, n_test: int | None) -> str:
    """ "task, N test items" (either part may be missing) for titles; "" when both are."""
    parts = [task] if task else []
    if n_test:
        parts.append(f"{n_test} test items")
    return ", ".join(parts)


def _error_bars(plus: np.ndarray, minus: np.ndarray) -> dict[str, Any]:
    """Asymmetric error bars: `plus` above each value, `minus` below it."""
    return {
        "type": "data",
        "symmetric": False,
        "array": plus,
        "arrayminus": minus,
        "visible": True,
        "thickness": 1.5,
    }
