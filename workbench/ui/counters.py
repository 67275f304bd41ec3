"""The counters panel: how far each counter the fleet's profile declares (an energy register, a
water meter's volume; a battery's charge falls) advanced, per device type and per site, with its
rates, in its own unit."""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import bqplot as bq
import ipywidgets as widgets

from workbench.profiles.model import Profiles
from workbench.schema import Reading
from workbench.simulator.fleet import nearest_site
from workbench.streams.aggregate import CounterRun
from workbench.ui.style import card, table

MARGIN = {"top": 10, "bottom": 30, "left": 60, "right": 10}


def quantity(value: float | None, unit: str) -> str:
    """A number to 4 significant figures with its unit (``1,235 kWh``, ``0.7500 m³``)."""
    if value is None:
        return "–"
    digits = max(0, 3 - math.floor(math.log10(abs(value)))) if value else 0
    return f"{value:,.{digits}f} {unit}"


@dataclass
class CounterTotal:
    """What one counter advanced over a group of devices, and the data time they were watched."""

    advance: float = 0.0
    """How far the counter moved its way (up, or down for a falling one), all devices added."""
    devices: int = 0
    device_hours: float = 0.0

    def per_device_per_hour(self) -> float | None:
        """Mean advance of one device in one hour of data time; None before any time passed."""
        return self.advance / self.device_hours if self.device_hours > 0 else None

    def rate(self) -> float | None:
        """The whole group's advance per hour (its devices' rates added up)."""
        per = self.per_device_per_hour()
        return None if per is None else per * self.devices


Grouping = Callable[[str, CounterRun], str]
"""(device id, its run) → the name of the group the device counts in."""


def counter_totals(
    runs: Mapping[str, CounterRun], groupings: Mapping[str, Grouping], falls: Collection[str] = ()
) -> dict[tuple[str, str], dict[str, CounterTotal]]:
    """(metric, grouping) → group name → the metric's total over the devices the grouping puts
    there, in one pass over the devices (``falls``: the counters that count down)."""
    totals: defaultdict[tuple[str, str], defaultdict[str, CounterTotal]]
    totals = defaultdict(lambda: defaultdict(CounterTotal))
    for device_id, run in runs.items():
        names = [(g, group(device_id, run)) for g, group in groupings.items()]
        hours = run.hours
        for metric in run.last:
            advance = run.advance(metric, metric in falls)
            for g, name in names:
                total = totals[metric, g][name]
                total.advance += advance
                total.devices += 1
                total.device_hours += hours
    return {key: dict(sorted(by_name.items())) for key, by_name in totals.items()}


def site_of(reading: Reading | None) -> str:
    """The named site a reading's position is at ('elsewhere' far from any; 'unknown' without)."""
    if reading is None or reading.lat is None or reading.lon is None:
        return "unknown"
    return nearest_site(reading.lat, reading.lon)


class CountersPanel:
    """Each counter metric's advance as bars (per site, or per type for a fleet with no
    locations) and, for every counter, tables per type and per site."""

    def __init__(self, profiles: Profiles) -> None:
        self.profiles = profiles
        self.metrics = tuple(dict.fromkeys(m for t in profiles.types for m in t.of_kind("counter")))
        self.falls = {
            m.name
            for t in profiles.types
            for m in t.metrics
            if m.kind == "counter" and m.direction == "falls"
        }
        self.picker = widgets.Dropdown(
            options=[(profiles.label(m), m) for m in self.metrics], description="counter"
        )
        x, y = bq.OrdinalScale(), bq.LinearScale(min=0)
        self.bars = bq.Bars(scales={"x": x, "y": y}, colors=["#2ca02c"])
        self.y_axis = bq.Axis(scale=y, side="left", tick_format=",.4~g")
        self.figure = bq.Figure(
            marks=[self.bars],
            axes=[bq.Axis(scale=x), self.y_axis],
            animation_duration=0,
            fig_margin=MARGIN,
            layout=widgets.Layout(width="100%", height="220px", min_width="0"),
        )
        self.tables = widgets.HTML()
        self.tables.add_class("wb-counters")
        if not self.metrics:
            self.picker.layout.display = self.figure.layout.display = "none"
            self.tables.value = (
                '<span class="wb-note">this fleet\'s profile declares no counter metrics</span>'
            )
        self.widget = card("Counters", self.picker, self.figure, self.tables)
        self._totals: dict[tuple[str, str], dict[str, CounterTotal]] = {}
        self.picker.observe(lambda _c: self._draw_bars(), "value")

    def refresh(self, runs: Mapping[str, CounterRun], latest: Mapping[str, Reading]) -> None:
        """``runs``: each metered device's counters since first seen; ``latest``: its reading."""
        if not self.metrics:
            return
        groupings: dict[str, Grouping] = {"type": lambda _d, run: run.device_type}
        if self.profiles.has_location:
            groupings["site"] = lambda device_id, _r: site_of(latest.get(device_id))
        self._totals = counter_totals(runs, groupings, self.falls)
        self._draw_bars()
        parts = []
        for metric in self.metrics:
            way = "decrease" if metric in self.falls else "increase"
            header = ["", way, "devices", "per device per h", "rate"]
            unit = self.profiles.units[metric]
            sections = [("by type", self._totals.get((metric, "type"), {}))]
            if self.profiles.has_location:
                sections.append(("by site", self._totals.get((metric, "site"), {})))
            for title, totals in sections:
                rows = [
                    [
                        html.escape(name),
                        html.escape(quantity(t.advance, unit)),
                        f"{t.devices:,}",
                        html.escape(quantity(t.per_device_per_hour(), f"{unit}/h")),
                        html.escape(quantity(t.rate(), f"{unit}/h")),
                    ]
                    for name, t in totals.items()
                ]
                label = html.escape(self.profiles.label(metric))
                parts.append(f"<b>{label} {title}</b>" + table(header, rows))
        if not self.profiles.has_location:
            parts.append(
                '<span class="wb-note">no per-site tables: this fleet\'s readings carry no '
                "location</span>"
            )
        self.tables.value = "".join(parts)

    def _draw_bars(self) -> None:
        metric = self.picker.value
        if metric is None:
            return
        totals = self._totals.get((metric, "site" if self.profiles.has_location else "type"), {})
        self.y_axis.label = self.profiles.label(metric)
        with self.bars.hold_sync():
            self.bars.x = list(totals)
            self.bars.y = [t.advance for t in totals.values()]
