"""Fleet-wide views refreshed at the dashboard's interval: device mix, energy, and the map."""

from __future__ import annotations

import html
import random
from collections import Counter, defaultdict

import bqplot as bq
import ipywidgets as widgets
import numpy as np

from workbench.alerts.model import Alert
from workbench.schema import Reading
from workbench.simulator.fleet import nearest_site
from workbench.ui.style import STATUS_COLOURS, card, table

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


class EnergyPanel:
    """Energy used (kWh) per site as bars; per type and per site with efficiency as tables."""

    def __init__(self) -> None:
        x, y = bq.OrdinalScale(), bq.LinearScale(min=0)
        self.bars = bq.Bars(scales={"x": x, "y": y}, colors=["#2ca02c"])
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[
                bq.Axis(scale=x),
                bq.Axis(scale=y, orientation="vertical", label="energy (kWh)", tick_format=".2f"),
            ],
            animation_duration=0,
            fig_margin=_MARGIN,
            layout=widgets.Layout(width="100%", height="220px", min_width="0"),
        )
        self.tables = widgets.HTML()
        self.widget = card("Energy", self.figure, self.tables)

    def refresh(
        self,
        snapshot: dict[str, dict[str, object]],
        energy: dict[str, float],
        latest: dict[str, Reading],
        hours: float,
    ) -> None:
        """``energy``: kWh per metered device since first seen, over ``hours`` of data time."""
        hours = max(hours, 1e-6)
        by_site: dict[str, list[float]] = defaultdict(list)
        for device_id, kwh in energy.items():
            r = latest.get(device_id)
            by_site[nearest_site(r.lat, r.lon) if r else "unknown"].append(kwh)
        sites = sorted(by_site)
        with self.bars.hold_sync():
            self.bars.x = sites
            self.bars.y = [sum(by_site[s]) for s in sites]

        def row(name: str, kwh: float, devices: int, power: object = None) -> list[str]:
            per = kwh / max(devices, 1) / hours
            watts = "–" if power is None else f"{float(power):,.0f} W"
            return [html.escape(name), f"{kwh:,.3f} kWh", f"{devices:,}", f"{per:,.4f}", watts]

        header = ["", "energy", "devices", "kWh per device per h", "mean power"]
        types = [
            row(t, float(s["energy_kwh"]), int(s["devices"]), s.get("mean_power_w"))
            for t, s in sorted(snapshot.items())
            if "energy_kwh" in s
        ]
        site_rows = [row(s, sum(by_site[s]), len(by_site[s])) for s in sites]
        self.tables.value = (
            "<b>by type</b>" + table(header, types) + "<b>by site</b>" + table(header, site_rows)
        )


class MapPanel:
    """Devices at their positions, coloured by status (a plain lat/lon plot: works offline)."""

    def __init__(self) -> None:
        x, y = bq.LinearScale(min=-180, max=180), bq.LinearScale(min=-60, max=75)
        self.colour_scale = bq.OrdinalColorScale(
            domain=list(STATUS_COLOURS), colors=list(STATUS_COLOURS.values())
        )
        self.scatter = bq.Scatter(
            scales={"x": x, "y": y, "color": self.colour_scale},
            default_size=16,
            display_names=False,
            tooltip=bq.Tooltip(fields=["name", "color"], labels=["device", "status"]),
        )
        self.figure = bq.Figure(
            marks=[self.scatter],
            axes=[
                bq.Axis(scale=x, label="longitude (°)"),
                bq.Axis(scale=y, orientation="vertical", label="latitude (°)"),
            ],
            animation_duration=0,
            fig_margin=_MARGIN,
            layout=widgets.Layout(width="100%", height="300px", min_width="0"),
        )
        legend = " ".join(
            f'<span style="color:{c}">●</span> {s}' for s, c in STATUS_COLOURS.items()
        )
        self.note = widgets.HTML()
        self.widget = card(
            "Map", self.figure, widgets.HTML(f'<span class="wb-note">{legend}</span>'), self.note
        )

    def refresh(self, latest: dict[str, Reading], active: list[Alert]) -> None:
        status = device_status(active)
        ids = list(latest)
        if len(ids) > MAP_POINTS:
            flagged = [d for d in ids if d in status]
            rest = random.Random(0).sample(
                [d for d in ids if d not in status], MAP_POINTS - min(len(flagged), MAP_POINTS)
            )
            ids = flagged[:MAP_POINTS] + rest
        with self.scatter.hold_sync():
            self.scatter.x = np.array([latest[d].lon for d in ids], dtype=float)
            self.scatter.y = np.array([latest[d].lat for d in ids], dtype=float)
            self.scatter.color = [status.get(d, "ok") for d in ids]
            self.scatter.names = ids
        counts = Counter(status.get(d, "ok") for d in latest)
        shown = ", ".join(f"{counts[s]:,} {s}" for s in STATUS_COLOURS if counts[s])
        self.note.value = (
            f'<span class="wb-note">{len(ids):,} of {len(latest):,} devices drawn · {shown}</span>'
        )
