"""Pure logic behind the dashboard's views, fed from memory (the browser test covers the page)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from workbench import schema
from workbench.alerts.model import Alert, SeverityPolicy
from workbench.config import Settings
from workbench.simulator.simulation import simulate
from workbench.streams.validate import ReadingBatch
from workbench.ui.buffers import minmax_downsample
from workbench.ui.export import READING_COLUMNS, readings_csv
from workbench.ui.fleet_views import device_status
from workbench.ui.session import AlertLog, LiveSession
from workbench.ui.trend import TrendPanel

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


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


def test_readings_csv_has_one_column_per_field_and_blanks_for_missing_metrics() -> None:
    readings = [r for r, _ in simulate(20, 20, 40, seed=1)]
    rows = list(csv.DictReader(io.StringIO(readings_csv(readings))))
    assert tuple(rows[0]) == READING_COLUMNS
    assert len(rows) == 40
    meter = next(r for r in rows if r["device_type"] == "smart_meter")
    assert meter["temperature"] == "" and float(meter["power"]) >= 0
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


def test_trend_follows_a_type_mean_or_one_device_from_the_stream() -> None:
    session = LiveSession(Settings.from_env(bootstrap_servers="localhost:1"), truth_topic=None)
    trend = TrendPanel(session)
    readings = [r for r, _ in simulate(40, 40, 400, seed=2)]  # 10 s of data
    for i in range(0, 400, 50):
        batch = readings[i : i + 50]
        session._on_batch(ReadingBatch(batch, [0] * len(batch)))
    thermostats = [r for r in readings if r.device_type == "thermostat"]
    seconds = {int(r.ts.timestamp()) for r in thermostats}
    assert len(trend._x) == len(seconds)  # one mean per second of data
    first = [r.temperature for r in thermostats if int(r.ts.timestamp()) == min(seconds)]
    assert trend._y[0] == pytest.approx(sum(first) / len(first))
    device = thermostats[0].device_id
    trend.device_cb.value = device  # rebuilt from the buffered readings
    assert list(trend._y) == [r.temperature for r in thermostats if r.device_id == device]
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
