"""Pure logic behind the dashboard's views, fed from memory (the browser test covers the page)."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests.html_tables import html_tables
from workbench import schema
from workbench.alerts.model import Alert, SeverityPolicy
from workbench.config import Settings
from workbench.profiles.active import shipped
from workbench.profiles.compile import compile_profiles
from workbench.profiles.load import load_profiles, parse_profiles
from workbench.simulator.fleet import SITES
from workbench.simulator.simulation import simulate
from workbench.streams.aggregate import RollingAggregates
from workbench.streams.checkpoint import DeviceStatus
from workbench.ui.buffers import minmax_downsample
from workbench.ui.counters import CountersPanel, quantity
from workbench.ui.dashboard import Dashboard
from workbench.ui.export import reading_header, readings_csv
from workbench.ui.fleet_views import MAP_POINTS, MapPanel, device_status
from workbench.ui.session import AlertLog, LiveSession
from workbench.ui.trend import TrendPanel

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
PLANT = compile_profiles(load_profiles(Path(__file__).parent / "data" / "profiles" / "plant.toml"))
NOWHERE = Settings.from_env(bootstrap_servers="localhost:1")
"""An unreachable broker: these sessions are never started, the views are fed from memory."""


def _alert(n: int, device: str = "d-1", severity: str = "low", kind: str = "spike") -> Alert:
    return Alert(
        alert_id=f"a{n}",
        device_id=device,
        device_type="thermostat",
        kind=kind,
        metric="temperature",
        severity=severity,
        score=0.5,
        first_seen=T0 + timedelta(seconds=n),
        last_seen=T0 + timedelta(seconds=n),
        readings=1,
        observed=30.0,
        expected_low=20.0,
        expected_high=22.0,
        explanation="x",
    )


def test_downsampling_caps_points_and_keeps_a_spike() -> None:
    x = np.arange(100_000)
    y = np.zeros(100_000)
    y[54_321] = 99.0
    xs, ys = minmax_downsample(x, y, 2_000)
    assert len(xs) <= 2_000
    assert 99.0 in ys and 54_321 in xs
    assert np.all(np.diff(xs) > 0)  # still in time order
    small_x, _ = minmax_downsample(x[:10], y[:10], 2_000)
    assert len(small_x) == 10


def test_readings_csv_has_a_column_per_field_with_its_unit_and_blanks_for_missing_metrics() -> None:
    readings = [r for r, _ in simulate(20, 20, 40, seed=1)]
    rows = list(csv.DictReader(io.StringIO(readings_csv(readings))))
    header = list(rows[0])
    assert tuple(header) == reading_header()
    assert header[:7] == ["ts", "device_id", "device_type", "seq", "lat (°)", "lon (°)", "firmware"]
    assert header[7:] == [shipped().profiles.label(m) for m in shipped().profiles.metric_names]
    assert len(rows) == 40
    meter = next(r for r in rows if r["device_type"] == "smart_meter")
    assert meter["temperature (°C)"] == "" and float(meter["power (W)"]) >= 0
    assert datetime.fromisoformat(meter["ts"]).tzinfo is not None


def test_device_status_prefers_silence_then_the_highest_severity() -> None:
    status = device_status(
        [
            _alert(1, "a", "low"),
            _alert(2, "a", "high"),
            _alert(3, "b", "medium"),
            _alert(4, "b", "low", kind="dropout"),
        ]
    )
    assert status == {"a": "high", "b": "silent"}


def test_alert_log_keeps_the_latest_state_and_is_bounded() -> None:
    log = AlertLog(size=3, feed=2)
    log.update([_alert(1), _alert(2)])
    log.update([msgspec_replace(_alert(1), severity="high")])
    log.update([_alert(3), _alert(4)])
    assert list(log.by_id) == ["a1", "a3", "a4"]  # a2 was the oldest untouched: evicted
    assert log.by_id["a1"].severity == "high"
    assert [a.alert_id for a in log.feed] == ["a3", "a4"]
    assert log.opened_within(60) == 3


def msgspec_replace(alert: Alert, **changes: object) -> Alert:
    import msgspec

    return msgspec.structs.replace(alert, **changes)


def test_bad_settings_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="anomaly_threshold"):
        LiveSession.check({"anomaly_threshold": 1.5})
    with pytest.raises(ValueError, match="medium"):
        LiveSession.check({}, SeverityPolicy(high=0.4, medium=0.6))


def feed_figures(session: LiveSession, batches: list[list[schema.Reading]], worker: str) -> None:
    """Hand the session one worker's figures per batch, as the worker computes them."""
    agg, mark = RollingAggregates(profiles=session.profiles), 0
    for batch in batches:
        agg.update(batch)
        recent, mark = agg.means_since(mark)
        for listener in session.figure_listeners:
            listener({"worker": worker, "recent": recent})


def test_trend_follows_a_type_mean_from_the_workers_or_one_devices_readings() -> None:
    session = LiveSession(NOWHERE, truth_topic=None)
    trend = TrendPanel(session)
    readings = [r for r, _ in simulate(40, 40, 400, seed=2)]  # 10 s of data
    batches = [readings[i : i + 40] for i in range(0, 400, 40)]  # a second each
    # Two workers, each with half of every second's readings: one weighted mean per second.
    feed_figures(session, [b[::2] for b in batches], "w1")
    feed_figures(session, [b[1::2] for b in batches], "w2")
    assert len(trend._x) == len(batches)
    first = [r.temperature for r in batches[0] if r.device_type == "thermostat"]
    assert trend._y[0] == pytest.approx(sum(first) / len(first))
    device = next(r.device_id for r in readings if r.device_type == "thermostat")
    trend.device_cb.value = device  # the session now follows that device's readings
    assert list(trend._y) == []
    mine = [r for r in readings if r.device_id == device]
    trend._on_readings(mine)
    assert list(trend._y) == [r.temperature for r in mine]
    trend.refresh()
    assert device in trend.status.value
    assert len(trend.line.y) == len(trend._y)
    assert schema.UNITS["temperature"] in trend.y_axis.label


def test_the_dashboard_benchmark_table_has_a_unit_on_every_figure() -> None:
    from workbench.bench.dashboard import format_table

    row = {
        "offered_readings_per_s": 10_000.0,
        "kernel_msgs_per_s": 9_980,
        "points": 80,
        "on_screen_ms_p50": 180.0,
        "on_screen_ms_p95": 330.0,
        "slider_round_trip_ms_p50": 80.0,
        "slider_round_trip_ms_p95": 150.0,
        "slider_round_trip_ms_max": 410.0,
        "responsive": True,
    }
    table = format_table(
        {"rates": [row], "highest_responsive_readings_per_s": 10_000.0, "responsive_below_ms": 200}
    )
    header, line, verdict = table.splitlines()
    assert header.split()[:2] == ["offered/s", "kernel"] and "p95 ms" in header
    assert line.split() == [
        "10,000",
        "9,980",
        "80",
        "180.0",
        "330.0",
        "80.0",
        "150.0",
        "410.0",
        "yes",
    ]
    assert verdict.endswith("10,000 readings/s")


def test_counters_follow_every_register_by_type_and_site_in_its_unit() -> None:
    readings = [r for r, _ in simulate(40, 40, 4_000, seed=3)]  # 100 s of data
    agg = RollingAggregates()
    agg.update(readings)
    panel = CountersPanel(shipped().profiles)
    panel.refresh(agg.counter_runs(), agg.latest)
    by_type, by_site, battery_by_type, _ = html_tables(panel.tables.value)
    assert "<b>energy (kWh) by type</b>" in panel.tables.value
    assert "<b>battery (fraction) by site</b>" in panel.tables.value
    assert battery_by_type[0][1] == "decrease"  # a battery is a counter that falls
    assert [row[0] for row in battery_by_type[1:]] == ["air_quality", "env_sensor"]
    assert by_type[0] == ["", "increase", "devices", "per device per h", "rate"]
    assert [row[0] for row in by_type[1:]] == ["smart_meter", "thermostat"]
    for row in by_type[1:] + by_site[1:]:
        assert row[1].endswith(" kWh") and row[3].endswith(" kWh/h") and row[4].endswith(" kWh/h")
    assert {row[0] for row in by_site[1:]} <= {s.name for s in SITES} | {"elsewhere"}
    devices = sum(int(row[2]) for row in by_type[1:])
    metered = [run for run in agg.counter_runs().values() if "energy" in run.last]
    assert devices == sum(int(row[2]) for row in by_site[1:]) == len(metered)
    assert panel.y_axis.label == "energy (kWh)" and list(panel.bars.x) == [
        r[0] for r in by_site[1:]
    ]


def test_a_quantity_has_four_significant_figures_and_its_unit() -> None:
    assert quantity(88.5, "m³") == "88.50 m³"
    assert quantity(12_345.6, "kWh") == "12,346 kWh"
    assert quantity(0.000123456, "kWh/h") == "0.0001235 kWh/h"
    assert quantity(0.0, "m³") == "0 m³"
    assert quantity(None, "m³/h") == "–"  # no rate before any data time has passed


def test_a_fleet_without_counters_says_so() -> None:
    text = "[types.probe]\ninterval_s = 5\nmetrics.level = { unit = 'm', min = 0, max = 9 }\n"
    panel = CountersPanel(parse_profiles(text))
    panel.refresh({}, {})
    assert "declares no counter metrics" in panel.tables.value
    assert panel.figure.layout.display == "none"


def plant_readings(minutes: int = 60) -> list[schema.Reading]:
    """An hour of the plant: 2 pumps, 3 water meters (0.5 m³ a minute each), 4 doors (D-1 and
    D-3 open at the end), one reading a minute each, as the gateway sends them."""
    start = datetime.now(UTC) - timedelta(minutes=minutes)
    pump = {"inlet_pressure": 1.2, "outlet_pressure": 6.5, "flow": 120.0, "vibration": 2.1}
    pump |= {"bearing_temperature": 61.0, "motor_current": 48.0, "motor_voltage": 400.0}
    records = []
    for minute in range(minutes):
        t_ms = int((start + timedelta(minutes=minute)).timestamp() * 1000)
        at = {"t_ms": t_ms, "n": minute}
        records += [
            {"model": "pump", "serial": f"P-{p}", **at, **pump, "speed": 2950} for p in (1, 2)
        ]
        records += [
            {"model": "meter", "serial": f"M-{m}", **at, "volume": 1000.0 * m + 0.5 * minute}
            for m in (1, 2, 3)
        ]
        records += [
            {"model": "door", "serial": f"D-{d}", **at, "open": d % 2 == 1 and minute > 50}
            for d in (1, 2, 3, 4)
        ]
    return [PLANT.decode(json.dumps(r).encode()) for r in records]


def device_statuses(readings: list[schema.Reading], profiles: object) -> dict[str, DeviceStatus]:
    """Each device's latest state as a worker publishes it, after ``readings``."""
    agg = RollingAggregates(profiles=profiles)
    agg.update(readings)
    out = {}
    for device_id, latest in agg.latest.items():
        run = agg.counter_run(device_id)
        out[device_id] = DeviceStatus(
            device_id=device_id,
            device_type=latest.device_type,
            readings=sum(r.device_id == device_id for r in readings),
            last_seq=latest.seq,
            last_ts=latest.ts,
            missing=0,
            repeated=0,
            active_alerts=0,
            worker="w",
            partition=0,
            counters_since=None if run is None else run.first_ts,
            counters_first=None if run is None else run.first,
        )
    return out


@pytest.fixture
def plant_dashboard() -> Iterator[Dashboard]:
    """The dashboard of a session on the plant's profile, fed an hour of its readings as the
    workers publish them: their figures a minute at a time, the devices' latest states."""
    session = LiveSession(NOWHERE, truth_topic=None, profiles=PLANT)
    dashboard = Dashboard(session, heartbeat=False)
    readings = plant_readings()
    feed_figures(session, [readings[i : i + 9] for i in range(0, len(readings), 9)], "w")
    session.statuses = device_statuses(readings, PLANT.profiles)
    session.latest = {r.device_id: r for r in readings}
    asyncio.run(dashboard.refresh_fleet())
    dashboard.refresh_live()
    yield dashboard


def test_a_fleet_defined_only_by_its_profile_gets_its_types_and_metrics_with_units(
    plant_dashboard: Dashboard,
) -> None:
    trend = plant_dashboard.trend
    assert trend.type_dd.options == ("pump", "meter", "door")
    assert trend.metric_dd.options[:2] == (
        ("inlet_pressure (bar)", "inlet_pressure"),
        ("outlet_pressure (bar)", "outlet_pressure"),
    )
    assert len(trend.metric_dd.options) == 8 and trend.y_axis.label == "inlet_pressure (bar)"
    assert list(trend._y) == [1.2] * 60  # one mean a minute of data
    assert list(trend.device_cb.options) == ["P-1", "P-2"]
    trend.device_cb.value = "P-2"
    trend.type_dd.value = "meter"  # another type's metrics, and its mean again
    assert trend.metric_dd.options == (("volume (m³)", "volume"),)
    assert trend.y_axis.label == "volume (m³)" and trend.device is None
    assert list(trend._y)[-1] == pytest.approx(1000.0 * 2 + 0.5 * 59)  # mean of M-1…3


def test_the_plant_dashboard_shows_the_meters_counter_in_cubic_metres(
    plant_dashboard: Dashboard,
) -> None:
    counters = plant_dashboard.counters
    assert counters.picker.options == (("volume (m³)", "volume"),)
    (by_type,) = html_tables(counters.tables.value)  # no locations: no per-site table
    assert "<b>volume (m³) by type</b>" in counters.tables.value
    # 3 meters, each 29.5 m³ over 59 min of data: 30 m³/h each, 90 m³/h together
    assert by_type[1:] == [["meter", "88.50 m³", "3", "30.00 m³/h", "90.00 m³/h"]]
    assert "no per-site tables: this fleet's readings carry no location" in counters.tables.value
    assert list(counters.bars.x) == ["meter"] and counters.y_axis.label == "volume (m³)"


def test_the_plant_dashboard_has_no_map_and_shows_a_door_as_its_state(
    plant_dashboard: Dashboard,
) -> None:
    assert plant_dashboard.map.figure.layout.display == "none"
    note = plant_dashboard.map.note.value
    assert "no map: this fleet's readings carry no location" in note and "9 devices" in note
    assert "meter (3)" in plant_dashboard.distribution.pie.labels
    trend = plant_dashboard.trend
    trend.type_dd.value = "door"
    assert trend.metric_dd.options == (("open (closed/open)", "open"),)
    assert trend.y_axis.label == "open: share of readings at 1 (0–1)"
    assert list(trend._y)[-1] == 0.5  # 2 of 4 doors open in the last minute
    asyncio.run(plant_dashboard.refresh_fleet())
    assert "open: 2 of 4 devices at 1 now (closed/open)" in trend.state.value
    trend.device_cb.value = "D-1"
    trend._on_readings([r for r in plant_readings() if r.device_id == "D-1"])
    assert trend.y_axis.label == "open (closed/open)" and list(trend._y)[-1] is True


def test_the_plant_dashboard_exports_its_own_columns_with_units(
    plant_dashboard: Dashboard,
) -> None:
    readings = plant_readings()
    plant_dashboard.session.device_readings.extend(r for r in readings if r.device_id == "M-1")
    plant_dashboard.controls.export()
    data = re.search(r'href="data:text/csv;base64,([^"]+)"', plant_dashboard.controls.links.value)
    rows = list(csv.reader(io.StringIO(base64.b64decode(data[1]).decode())))
    header = rows[0]
    assert header[:4] == ["ts", "device_id", "device_type", "seq"]  # no position nor firmware
    assert header[4:] == [
        "inlet_pressure (bar)",
        "outlet_pressure (bar)",
        "flow (m³/h)",
        "vibration (mm/s)",
        "bearing_temperature (°C)",
        "motor_current (A)",
        "motor_voltage (V)",
        "speed (rpm)",
        "volume (m³)",
        "open (closed/open)",
    ]
    meter = dict(zip(header, next(r for r in rows[1:] if r[2] == "meter"), strict=True))
    assert meter["device_id"] == "M-1" and meter["volume (m³)"] == "1000.0"
    assert meter["open (closed/open)"] == meter["speed (rpm)"] == ""
    assert len(rows) == 1 + 60  # the followed meter's hour


def test_the_map_redraws_only_its_alert_layer_when_alerts_change() -> None:
    panel = MapPanel(shipped().profiles)
    readings = {r.device_id: r for r, _ in simulate(MAP_POINTS + 500, 1_000, 5_000, seed=4)}
    sent: list[str] = []
    panel.scatter.observe(lambda c: sent.append(f"base.{c['name']}"), ["x", "y", "names"])
    panel.flagged.observe(lambda c: sent.append(f"flagged.{c['name']}"), ["x", "y", "color"])
    panel.refresh(readings, [])
    base = list(panel.scatter.names)
    assert len(base) == MAP_POINTS  # a sample of the fleet, the same one every time
    assert len(panel.flagged.x) == 0
    sent.clear()
    hot = sorted(readings)[:3]
    panel.refresh(readings, [_alert(i, d, "high") for i, d in enumerate(hot)])
    assert sent and all(s.startswith("flagged.") for s in sent), sent
    assert list(panel.flagged.names) == hot and list(panel.flagged.color) == ["high"] * 3
    assert list(panel.scatter.names) == base
    assert f"{len(set(base) | set(hot)):,} of {len(readings):,} devices drawn" in panel.note.value
    assert "3 high" in panel.note.value


def test_fleet_views_are_redrawn_when_the_devices_change_not_at_every_tick(
    plant_dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("workbench.ui.dashboard.CHECKPOINT_S", 0.0)
    session, counters = plant_dashboard.session, plant_dashboard.counters
    drawn = []
    counters.tables.observe(lambda c: drawn.append(c["new"]), "value")
    later = plant_readings(minutes=61)  # a minute more: every meter advanced 0.5 m³
    session.statuses = device_statuses(later, PLANT.profiles)
    session.latest = {r.device_id: r for r in later}
    asyncio.run(plant_dashboard.refresh_fleet())
    assert drawn == []  # no new device state reached the session: nothing to redraw
    session.changes["devices"] += 1  # as a poll of the devices topic does
    asyncio.run(plant_dashboard.refresh_fleet())
    assert len(drawn) == 1 and "90.00 m³" in drawn[0]  # 3 meters, each 30 m³ over 60 min now
