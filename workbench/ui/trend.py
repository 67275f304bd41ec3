"""Metric trend for one device or a device type (mean), with the alerts on it as markers.

The type mean comes from the workers' figures (each second's mean over their readings, weighted
by how many each had); one device's readings are read from its partition once it is picked (the
session follows it). The type and metric pickers offer what the session's profiles declare, each
metric with its unit. A binary metric's type mean is the share of readings at 1, and the panel
says how many of the type's devices are at 1 now ("open: 3 of 12 devices")."""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections import deque
from datetime import datetime

import bqplot as bq
import ipywidgets as widgets
import numpy as np

from workbench.alerts.model import Alert
from workbench.profiles.model import Metric
from workbench.schema import Reading
from workbench.ui.buffers import as_datetime64, minmax_downsample
from workbench.ui.session import LiveSession
from workbench.ui.style import SEVERITY_COLOURS, card, full_width

MAX_POINTS = 2_000
"""Most points drawn per chart (SVG stays smooth with a few thousand)."""
SERIES_SIZE = 20_000
TYPE_MEAN = "all devices (mean)"
LATE_POINTS = 30
"""How many of the newest type-mean points a late worker's figures may still update."""
DEVICE_OPTIONS = 500
"""Most devices offered in the device box (typing any other id works too)."""


class TrendPanel:
    """Pick a type, a metric and optionally a device; the chart follows the live stream."""

    def __init__(self, session: LiveSession, device_type: str | None = None) -> None:
        self.session = session
        self.profiles = session.profiles
        types = self.profiles.type_names
        self.type_dd = widgets.Dropdown(
            options=types, value=device_type or types[0], description="type"
        )
        self.metric_dd = widgets.Dropdown(description="metric")
        # Only a finished entry (Enter or leaving the box) rebuilds the series: one scan of the
        # buffered readings per selection, not one per keystroke.
        self.device_cb = widgets.Combobox(
            placeholder=TYPE_MEAN,
            description="device",
            ensure_option=False,
            continuous_update=False,
        )
        self.device_cb.add_class("wb-device")
        self.x_scale = bq.DateScale()
        self.y_scale = bq.LinearScale()
        self.line = bq.Lines(scales={"x": self.x_scale, "y": self.y_scale}, colors=["#1f77b4"])
        self.markers = bq.Scatter(
            scales={"x": self.x_scale, "y": self.y_scale},
            default_size=48,
            stroke="black",
            tooltip=bq.Tooltip(fields=["x", "y"], formats=["%H:%M:%S", ".2f"]),
        )
        self.y_axis = bq.Axis(scale=self.y_scale, side="left")
        self.figure = bq.Figure(
            marks=[self.line, self.markers],
            axes=[bq.Axis(scale=self.x_scale, tick_format="%H:%M:%S"), self.y_axis],
            animation_duration=0,
            fig_margin={"top": 10, "bottom": 30, "left": 50, "right": 10},
            layout=widgets.Layout(width="100%", height="300px", min_width="0"),
        )
        self.status = widgets.HTML()
        self.state = widgets.HTML()
        """For a binary metric: how many of the type's devices are at 1 in their latest reading."""
        self.probe = widgets.HTML(layout=widgets.Layout(display="none"))
        """[data time, when the kernel heard of it] (Unix ms) of each point an update added: lets
        a benchmark time data → screen, and the view's own part, kernel → screen."""
        self.probe.add_class("wb-trend-probe")
        controls = widgets.HBox(
            [full_width(self.type_dd), full_width(self.metric_dd), full_width(self.device_cb)],
            layout=widgets.Layout(flex_flow="row wrap", width="100%"),
        )
        self.widget = card("Trend", controls, self.figure, self.status, self.state, self.probe)
        self._x: deque[datetime] = deque(maxlen=SERIES_SIZE)
        self._y: deque[float] = deque(maxlen=SERIES_SIZE)
        self._marks: deque[Alert] = deque(maxlen=500)
        self._new: deque[tuple[datetime, float]] = deque(maxlen=200)
        self._dirty = True
        self._means: dict[int, tuple[float, int]] = {}
        """second → (weighted sum, readings) of the type mean's points."""
        self._figures: deque[tuple[datetime, dict]] = deque(maxlen=SERIES_SIZE)
        """The workers' recent type means, kept to rebuild the series for another pick."""
        self._following: str | None = None
        self._offered: tuple[int, str] | None = None
        """(devices known, type) when the device box's choices were last set."""
        self._follow_task: asyncio.Task | None = None
        self._set_metrics()
        self.type_dd.observe(self._on_type, "value")
        self.metric_dd.observe(lambda _c: self.reselect(), "value")
        self.device_cb.observe(lambda _c: self.reselect(), "value")
        session.reading_listeners.append(self._on_readings)
        session.figure_listeners.append(self._on_figures)
        session.alert_listeners.append(self._on_alerts)

    # -- selection -------------------------------------------------------------------------
    @property
    def device(self) -> str | None:
        return self.device_cb.value.strip() or None

    @property
    def metric(self) -> Metric | None:
        """The picked metric as its type declares it."""
        name = self.metric_dd.value
        return None if name is None else self.profiles.type(self.type_dd.value).metric(name)

    def _set_metrics(self) -> None:
        metrics = self.profiles.type(self.type_dd.value).metric_names
        self.metric_dd.options = [(self.profiles.label(m), m) for m in metrics]
        self.metric_dd.value = metrics[0]
        self._label_axis()

    def _label_axis(self) -> None:
        metric = self.metric
        if metric is None:
            return
        if metric.kind == "binary" and self.device is None:
            self.y_axis.label = f"{metric.name}: share of readings at 1 (0–1)"
        else:
            self.y_axis.label = self.profiles.label(metric.name)

    def _on_type(self, _change: object) -> None:
        self._set_metrics()  # first: the picked metric may not be one of the new type's
        self.device_cb.value = ""
        self.reselect()

    def _matches(self, r: Reading) -> bool:
        return r.device_type == self.type_dd.value and (
            self.device is None or r.device_id == self.device
        )

    def reselect(self) -> None:
        """Rebuild the series for the new selection (follow the picked device's readings)."""
        metric = self.metric_dd.value
        if metric is None:
            return
        self._label_axis()
        self._x.clear()
        self._y.clear()
        self._means.clear()
        self._marks.clear()
        if self.device != self._following:
            self._following = self.device
            self._follow(self.device)
        elif self.device is not None:
            picked = [r for r in self.session.device_readings if self._matches(r)]
            self._x.extend(r.ts for r in picked)
            self._y.extend(getattr(r, metric) for r in picked)
        if self.device is None:
            for ts, recent in self._figures:
                self._add_mean(ts, recent)
        self._marks.extend(a for a in self.session.alerts.by_id.values() if self._marks_alert(a))
        self._dirty = True

    def _follow(self, device: str | None) -> None:
        """Have the session read ``device``'s readings (on the kernel's loop, when it runs)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (a script building the panel): nothing streams in anyway
        self._follow_task = loop.create_task(self.session.follow(device))

    def follow_fleet(self, latest: dict[str, Reading]) -> None:
        """Offer the selected type's devices in the device box; for a binary metric, say how
        many of them are at 1 in ``latest`` (each device's newest reading)."""
        device = self.device
        if device is not None and not self.session.following and device in self.session.statuses:
            self._follow(device)  # picked before its state (and so its partition) arrived
        metric = self.metric
        binary = metric is not None and metric.kind == "binary"
        offered = (len(latest), self.type_dd.value)  # devices are added, never taken away
        if offered == self._offered and not binary:
            self.state.value = ""
            return
        self._offered = offered
        mine = [r for r in latest.values() if r.device_type == self.type_dd.value]
        ids = sorted(r.device_id for r in mine)[:DEVICE_OPTIONS]
        if list(self.device_cb.options) != ids:
            self.device_cb.options = ids
        if metric is None or not binary:
            self.state.value = ""
            return
        on = sum(1 for r in mine if getattr(r, metric.name))
        unit = html.escape(metric.unit)
        self.state.value = (
            f'<span class="wb-note">{html.escape(metric.name)}: {on:,} of {len(mine):,} '
            f"devices at 1 now ({unit})</span>"
        )

    # -- feeding ---------------------------------------------------------------------------
    def _add_mean(self, ts: datetime, recent: dict) -> bool:
        """Fold one worker's mean of the picked type and metric into that second's point."""
        part = recent.get(self.type_dd.value)
        if part is None or self.metric_dd.value not in part["means"]:
            return False
        second = int(ts.timestamp())
        n = int(part["readings"])
        weighted, count = self._means.get(second, (0.0, 0))
        weighted, count = weighted + part["means"][self.metric_dd.value] * n, count + n
        self._means[second] = (weighted, count)
        at = datetime.fromtimestamp(second + 0.5, ts.tzinfo)
        if not self._x or at > self._x[-1]:
            self._x.append(at)
            self._y.append(weighted / count)
            return True
        # Workers' figures arrive a little out of order: update that second's point in place.
        for back in range(1, min(LATE_POINTS, len(self._x)) + 1):
            if self._x[-back] == at:
                self._y[-back] = weighted / count
                return True
            if self._x[-back] < at:
                break
        return False

    def _on_figures(self, figures: dict) -> None:
        recent = figures.get("recent") or {}
        for device_type, part in recent.items():
            ts = datetime.fromisoformat(part["ts"])
            self._figures.append((ts, {device_type: part}))
            if self.device is None and self._add_mean(ts, {device_type: part}):
                self._new.append((ts, time.time()))
                self._dirty = True
        while len(self._means) > SERIES_SIZE:
            self._means.pop(next(iter(self._means)))

    def _on_readings(self, readings: list[Reading]) -> None:
        picked = [r for r in readings if self._matches(r)]
        if not picked or self.device is None:
            return
        metric = self.metric_dd.value
        self._x.extend(r.ts for r in picked)
        self._y.extend(getattr(r, metric) for r in picked)
        heard = time.time()
        self._new.extend((r.ts, heard) for r in picked)
        self._dirty = True

    def _marks_alert(self, a: Alert) -> bool:
        return (
            a.device_type == self.type_dd.value
            and a.metric == self.metric_dd.value
            and a.observed is not None
            and (self.device is None or a.device_id == self.device)
        )

    def _on_alerts(self, alerts: list[Alert]) -> None:
        fresh = [a for a in alerts if self._marks_alert(a)]
        if fresh:
            self._marks.extend(fresh)
            self._dirty = True

    # -- drawing ---------------------------------------------------------------------------
    def refresh(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        x = as_datetime64(self._x)
        y = np.fromiter(self._y, float, len(self._y))
        x, y = minmax_downsample(x, y, MAX_POINTS)
        start = x[0] if len(x) else None
        marks = [
            a for a in self._marks if start is None or as_datetime64([a.last_seen])[0] >= start
        ]
        with self.line.hold_sync():
            self.line.x, self.line.y = x, y
        with self.markers.hold_sync():
            self.markers.x = as_datetime64(a.last_seen for a in marks)
            self.markers.y = np.array([a.observed for a in marks], dtype=float)
            colours = [SEVERITY_COLOURS.get(a.severity, "#777") for a in marks]
            self.markers.colors = colours or ["#777"]
        what = html.escape(self.device or f"{self.type_dd.value} · {TYPE_MEAN}")  # typed in
        newest = self._x[-1].strftime("%H:%M:%S") if self._x else "–"
        self.status.value = (
            f'<span class="wb-note">{what}: {len(self._x):,} points ({len(x):,} drawn), '
            f"{len(marks)} alert markers, newest {newest} UTC</span>"
        )
        if self._new:
            self.probe.value = json.dumps(
                [[round(t.timestamp() * 1000), round(heard * 1000)] for t, heard in self._new]
            )
            self._new.clear()
