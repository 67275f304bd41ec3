"""Small bqplot figures for the notebooks: grouped bars, lines over a number or over time.

Axis labels carry units (the caller passes them); figures do not animate (``animation_duration=0``)
so a refresh is drawn at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from bqplot import Axis, Bars, DateScale, Figure, LinearScale, Lines, OrdinalScale

LAYOUT = {"height": "320px", "width": "100%"}
MARGIN = {"top": 50, "bottom": 60, "left": 70, "right": 20}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    title: str,
    y_label: str,
    y_max: float | None = None,
    y_min: float = 0.0,
) -> Figure:
    """Bars per category, one colour per series (grouped), from ``y_min`` (0 unless negative)."""
    x, y = OrdinalScale(), LinearScale(min=y_min, max=y_max)
    bars = Bars(
        x=list(categories),
        y=[list(v) for v in series.values()],
        scales={"x": x, "y": y},
        type="grouped",
        colors=COLORS[: max(len(series), 1)],
        labels=list(series),
        display_legend=len(series) > 1,
    )
    return Figure(
        marks=[bars],
        axes=[Axis(scale=x), Axis(scale=y, orientation="vertical", label=y_label)],
        title=title,
        animation_duration=0,
        fig_margin=MARGIN,
        layout=LAYOUT,
    )


def line_chart(
    x: Sequence[float] | np.ndarray,
    series: Mapping[str, Sequence[float]],
    title: str,
    x_label: str,
    y_label: str,
    y_min: float | None = None,
    y_max: float | None = None,
) -> Figure:
    """One line (with markers) per series; a time axis when ``x`` holds datetime64 values."""
    xs = np.asarray(x)
    x_scale = DateScale() if np.issubdtype(xs.dtype, np.datetime64) else LinearScale()
    y_scale = LinearScale(min=y_min, max=y_max)
    lines = Lines(
        x=xs,
        y=[list(v) for v in series.values()],
        scales={"x": x_scale, "y": y_scale},
        labels=list(series),
        display_legend=len(series) > 1,
        colors=COLORS[: max(len(series), 1)],
        marker="circle" if len(xs) <= 50 else None,
    )
    return Figure(
        marks=[lines],
        axes=[
            Axis(scale=x_scale, label=x_label),
            Axis(scale=y_scale, orientation="vertical", label=y_label),
        ],
        title=title,
        animation_duration=0,
        fig_margin=MARGIN,
        layout=LAYOUT,
    )
