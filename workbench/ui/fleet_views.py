"""Fleet-wide views refreshed at the dashboard's interval: device mix and the map (counters are
in :mod:`workbench.ui.counters`)."""

from __future__ import annotations

import zlib
from collections import Counter

import bqplot as bq
import ipywidgets as widgets
import numpy as np

from workbench.alerts.model import Alert
from workbench.profiles.model import Profiles
from workbench.schema import Reading
from workbench.ui.style import STATUS_COLOURS, card

MAP_POINTS = 3_000
"""Most devices drawn on the map; devices with an alert are always among them."""
_MARGIN = {"top": 10, "bottom": 30, "left": 50, "right": 10}


def device_status(active: list[Alert]) -> dict[str, str]:
    """device id → 'silent' (dropout) or the highest severity among its active alerts."""
    rank = {"low": 1, "medium": 2, "high": 3, "silent": 4}
    status: dict[str, str] = {}
    for a in active:
        s = "silent" if a.kind == "dropout" else a.severity
        if rank[s] > rank.get(status.get(a.device_id, ""), 0):
            status[a.device_id] = s
    return status


class DistributionPanel:
    """Devices seen by type, as a pie."""

    def __init__(self) -> None:
        self.pie = bq.Pie(
            display_labels="outside", labels_color="black", font_size="12px", radius=90
        )
        self.figure = bq.Figure(
            marks=[self.pie],
            animation_duration=0,
            fig_margin={"top": 10, "bottom": 10, "left": 10, "right": 10},
            layout=widgets.Layout(width="100%", height="260px", min_width="0"),
        )
        self.note = widgets.HTML()
        self.widget = card("Devices by type", self.figure, self.note)

    def refresh(self, latest: dict[str, Reading]) -> None:
        counts = Counter(r.device_type for r in latest.values())
        types = sorted(counts)
        with self.pie.hold_sync():
            self.pie.labels = [f"{t} ({counts[t]:,})" for t in types]
            self.pie.sizes = [counts[t] for t in types]
        self.note.value = f'<span class="wb-note">{sum(counts.values()):,} devices seen</span>'


class MapPanel:
    """Devices at their positions, coloured by status (a plain lat/lon plot: works offline); for
    a fleet whose profile maps no position, only the status counts.

    Two layers: every device drawn (a stable sample of at most ``MAP_POINTS``) in the colour of
    "ok", and over it the devices with an alert in their status's colour. Alerts come and go
    every few seconds; only the small top layer changes then, so the browser redraws a few
    points, not thousands.
    """

    def __init__(self, profiles: Profiles) -> None:
        self.located = profiles.has_location
        x, y = bq.LinearScale(min=-180, max=180), bq.LinearScale(min=-60, max=75)
        self.colour_scale = bq.OrdinalColorScale(
            domain=list(STATUS_COLOURS), colors=list(STATUS_COLOURS.values())
        )
        tooltip = {"fields": ["name"], "labels": ["device"]}
        self.scatter = bq.Scatter(
            scales={"x": x, "y": y},
            colors=[STATUS_COLOURS["ok"]],
            default_size=16,
            display_names=False,
            tooltip=bq.Tooltip(**tooltip),
        )
        self.flagged = bq.Scatter(
            scales={"x": x, "y": y, "color": self.colour_scale},
            default_size=24,
            display_names=False,
            tooltip=bq.Tooltip(fields=["name", "color"], labels=["device", "status"]),
        )
        self.figure = bq.Figure(
            marks=[self.scatter, self.flagged],
            axes=[
                bq.Axis(scale=x, label="longitude (°)"),
                bq.Axis(scale=y, side="left", label="latitude (°)"),
            ],
            animation_duration=0,
            fig_margin=_MARGIN,
            layout=widgets.Layout(width="100%", height="300px", min_width="0"),
        )
        legend = " ".join(
            f'<span style="color:{c}">●</span> {s}' for s, c in STATUS_COLOURS.items()
        )
        self.note = widgets.HTML()
        self.legend = widgets.HTML(f'<span class="wb-note">{legend}</span>')
        if not self.located:
            self.figure.layout.display = self.legend.layout.display = "none"
        self.widget = card("Map", self.figure, self.legend, self.note)

    def refresh(self, latest: dict[str, Reading], active: list[Alert]) -> None:
        status = device_status(active)
        counts = Counter(status.get(d, "ok") for d in latest)
        shown = ", ".join(f"{counts[s]:,} {s}" for s in STATUS_COLOURS if counts[s])
        if not self.located:
            self.note.value = (
                '<span class="wb-note">no map: this fleet\'s readings carry no location (its '
                f"profile maps no lat/lon) · {len(latest):,} devices · {shown or 'none yet'}</span>"
            )
            return
        base = _stable_sample(latest, MAP_POINTS)
        flagged = sorted(d for d in status if d in latest)[:MAP_POINTS]
        _place(self.scatter, latest, base)
        _place(self.flagged, latest, flagged)
        colours = [status[d] for d in flagged]
        if list(self.flagged.color if self.flagged.color is not None else []) != colours:
            self.flagged.color = colours
        drawn = len(set(base) | set(flagged))
        self.note.value = (
            f'<span class="wb-note">{drawn:,} of {len(latest):,} devices drawn · {shown}</span>'
        )


def _stable_sample(latest: dict[str, Reading], most: int) -> list[str]:
    """At most ``most`` device ids, the same ones from one refresh to the next (by a hash of
    the id, not by arrival), in id order."""
    ids = sorted(latest)
    if len(ids) > most:
        ids = sorted(sorted(ids, key=lambda d: zlib.crc32(d.encode()))[:most])
    return ids


def _place(mark: bq.Scatter, latest: dict[str, Reading], ids: list[str]) -> None:
    """Put these devices on ``mark`` at their positions; nothing is sent when nothing moved."""
    x = np.array([latest[d].lon for d in ids], dtype=float)
    y = np.array([latest[d].lat for d in ids], dtype=float)
    with mark.hold_sync():
        mark.x, mark.y = x, y
        if list(mark.names if mark.names is not None else []) != ids:
            mark.names = ids
