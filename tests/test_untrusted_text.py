"""Text from devices, alerts and viewers reaches the page and the CSV exports only neutralised.

A device id, firmware string, alert explanation or a name typed into a box is data, never markup
for the browser nor a formula for a spreadsheet. Pure rendering, fed from memory (no Kafka).
"""

from __future__ import annotations

import asyncio
import csv
import html
import io
import json
import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from workbench.alerts.model import Alert
from workbench.config import Settings
from workbench.explore.live_table import LiveTable
from workbench.explore.table import html_table, readings_table
from workbench.explore.tuning import compare, comparison_table
from workbench.profiles.compile import compile_profiles
from workbench.profiles.load import parse_profiles
from workbench.schema import Thermostat
from workbench.streams.aggregate import CounterRun
from workbench.streams.metrics import PipelineMetrics
from workbench.streams.validate import ReadingBatch
from workbench.ui.alerts_view import AlertFeedPanel, AlertHistoryPanel
from workbench.ui.controls import download_link
from workbench.ui.counters import CountersPanel
from workbench.ui.dashboard import Dashboard
from workbench.ui.export import alerts_csv, readings_csv
from workbench.ui.overview import OverviewPanel
from workbench.ui.session import AlertLog, LiveSession
from workbench.ui.style import badge, card
from workbench.ui.trend import TrendPanel
from workbench.ui.tuning import TuningPanel

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
FORMULA = "=cmd|' /C calc'!A0"


def thermostat(**changes: object) -> Thermostat:
    fields: dict = {
        "device_id": "thermostat-0001",
        "ts": T0,
        "seq": 1,
        "lat": 51.5,
        "lon": -3.2,
        "firmware": "2.4.1",
        "temperature": -5.0,
        "humidity": 40.0,
        "power": 800.0,
        "energy": 1234.5,
    }
    return Thermostat(**(fields | changes))


def alert(**changes: object) -> Alert:
    fields: dict = {
        "alert_id": "a1",
        "device_id": "thermostat-0001",
        "device_type": "thermostat",
        "kind": "spike",
        "metric": "temperature",
        "severity": "high",
        "score": 0.9,
        "first_seen": T0,
        "last_seen": T0,
        "readings": 1,
        "observed": -5.0,
        "expected_low": -7.5,
        "expected_high": 2.0,
        "explanation": "temperature -5.0 °C, expected -7.5 to 2.0 °C",
    }
    return Alert(**(fields | changes))


def parsed(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# -- CSV exports: a spreadsheet must not run a cell --------------------------------------------
FORMULA_STARTS = ["=", "+", "-", "@", "\t", "\r"]


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_readings_export_prefixes_text_a_spreadsheet_would_run(start: str) -> None:
    hostile = thermostat(firmware=start + "1+1", device_id=start + "SUM(A1)")
    (row,) = parsed(readings_csv([hostile]))
    assert row["firmware"] == "'" + start + "1+1"
    assert row["device_id"] == "'" + start + "SUM(A1)"


def test_readings_export_keeps_negative_numbers_and_plain_text_as_they_are() -> None:
    (row,) = parsed(readings_csv([thermostat(firmware=FORMULA)]))
    assert row["firmware"] == "'" + FORMULA
    assert row["lon (°)"] == "-3.2" and row["temperature (°C)"] == "-5.0"
    assert row["device_id"] == "thermostat-0001"
    assert row["ts"] == T0.isoformat()


@pytest.mark.parametrize("start", FORMULA_STARTS)
def test_alerts_export_prefixes_text_a_spreadsheet_would_run(start: str) -> None:
    fields = ("device_id", "kind", "metric", "explanation", "status")
    hostile = alert(**{f: start + f for f in fields})
    (row,) = parsed(alerts_csv([hostile]))
    assert {f: row[f] for f in fields} == {f: "'" + start + f for f in fields}


def test_alerts_export_keeps_negative_numbers_and_plain_text_as_they_are() -> None:
    (row,) = parsed(alerts_csv([alert(explanation=FORMULA)]))
    assert row["explanation"] == "'" + FORMULA
    assert (row["observed"], row["expected_low"]) == ("-5.0", "-7.5")
    assert row["device_id"] == "thermostat-0001" and row["kind"] == "spike"
    assert row["first_seen"] == msgspec.to_builtins(T0)


# -- HTML: markup in data is shown as text, never run ------------------------------------------
MARKUP = ("<img src=y onerror=alert(1)>", "<script>alert(2)</script>", "\"'&")
HOSTILE = "".join(MARKUP)
"""Every field these tests fill: an image whose error handler runs, a script, quotes and an &."""


def assert_shown_as_text(markup: str) -> None:
    """``markup`` has HOSTILE escaped, and no raw piece of it (no tag, no attribute break-out)."""
    assert html.escape(HOSTILE) in markup
    for piece in MARKUP:
        assert piece not in markup


@pytest.fixture
def session() -> LiveSession:
    """A viewer's session that is never started (nothing connects to the unreachable broker)."""
    return LiveSession(Settings.from_env(bootstrap_servers="localhost:1"), truth_topic=None)


def hostile_alert_log() -> AlertLog:
    log = AlertLog()
    text = ("device_id", "kind", "metric", "severity", "explanation", "status")
    log.update([alert(**dict.fromkeys(text, HOSTILE))])
    return log


def test_a_device_typed_into_the_trend_box_is_shown_as_text(session: LiveSession) -> None:
    trend = TrendPanel(session)
    trend.device_cb.value = HOSTILE
    trend.refresh()
    assert_shown_as_text(trend.status.value)


def test_the_live_alert_feed_shows_alert_fields_and_who_acted_as_text(
    session: LiveSession,
) -> None:
    session.alerts = hostile_alert_log()
    session.lifecycle = {
        a: {"state": "acknowledged", "acknowledged_by": HOSTILE} for a in session.alerts.by_id
    }
    feed = AlertFeedPanel(session)
    feed.refresh()
    assert_shown_as_text(feed.feed.value)
    assert "acknowledged by" in feed.feed.value


def test_the_alert_history_shows_alert_fields_and_who_acted_as_text(
    session: LiveSession,
) -> None:
    session.alerts = hostile_alert_log()
    session.lifecycle = {
        a: {"state": "cleared", "cleared_by": HOSTILE} for a in session.alerts.by_id
    }
    history = AlertHistoryPanel(session)
    history.refresh()
    assert_shown_as_text(history.table.value)
    assert "cleared by" in history.table.value


def test_the_overview_shows_a_workers_error_and_name_as_text(session: LiveSession) -> None:
    session.started = True
    metrics = PipelineMetrics()
    metrics.record_error(RuntimeError(HOSTILE))
    figures = {"worker": HOSTILE, "at": time.time(), "partitions": [0], "devices": 1}
    figures |= {"pipeline": metrics.snapshot().as_dict(), "settings_version": 0}
    session.workers = {HOSTILE: figures}
    overview = OverviewPanel(session)
    assert_shown_as_text(overview.stats.value)
    assert_shown_as_text(overview.workers.value)


def hostile_units() -> str:
    """A profile whose counter and binary metrics have markup for units (a profile file is text
    someone wrote: its units reach the page as they are written)."""
    unit = json.dumps(HOSTILE)
    return (
        "[types.meter]\ninterval_s = 60\n"
        f'metrics.volume = {{ unit = {unit}, min = 0, max = 1e9, kind = "counter" }}\n'
        f'metrics.open = {{ unit = {unit}, kind = "binary" }}\n'
    )


def test_the_counter_tables_show_units_as_text() -> None:
    counters = CountersPanel(parse_profiles(hostile_units()))
    hour = T0 + timedelta(hours=1)
    counters.refresh({"m-1": CounterRun("meter", T0, {"volume": 1.0}, hour, {"volume": 3.0})}, {})
    assert_shown_as_text(counters.tables.value)


def test_a_binary_metrics_state_shows_its_unit_as_text() -> None:
    profiles = compile_profiles(parse_profiles(hostile_units()))
    session = LiveSession(
        Settings.from_env(bootstrap_servers="localhost:1"), truth_topic=None, profiles=profiles
    )
    trend = TrendPanel(session)
    trend.metric_dd.value = "open"
    at = {"device_id": "m-1", "ts": T0.isoformat(), "volume": 1.0, "open": True}
    trend.follow_fleet({"m-1": profiles.decode(json.dumps(at | {"device_type": "meter"}))})
    assert_shown_as_text(trend.state.value)


def test_a_failed_refresh_is_reported_as_text(session: LiveSession) -> None:
    dashboard = Dashboard(session, heartbeat=False)

    def fail() -> None:
        raise RuntimeError(HOSTILE)

    dashboard.overview.refresh = fail

    async def until_reported() -> None:
        task = asyncio.ensure_future(dashboard._run())
        while not dashboard.controls.links.value:
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(asyncio.wait_for(until_reported(), 10))
    assert_shown_as_text(dashboard.controls.links.value)


def test_the_tuning_panel_shows_refusals_as_text(session: LiveSession) -> None:
    tuning = TuningPanel(session)

    async def refuse(*_args: object) -> None:
        raise ValueError(HOSTILE)

    session.apply = refuse
    session.preview = refuse
    asyncio.run(tuning._apply())
    asyncio.run(tuning._preview())
    assert_shown_as_text(tuning.error.value)
    assert_shown_as_text(tuning.preview_result.value)


def test_panel_titles_badges_and_download_links_show_text_as_text() -> None:
    assert_shown_as_text(card(HOSTILE).children[0].value)
    assert_shown_as_text(badge(HOSTILE))
    assert_shown_as_text(download_link(HOSTILE, "a,b", HOSTILE))


def test_notebook_tables_show_device_ids_firmware_and_names_as_text() -> None:
    reading = thermostat(device_id=HOSTILE, firmware=HOSTILE)
    assert_shown_as_text(readings_table([reading], caption="readings"))
    assert_shown_as_text(html_table([HOSTILE], [[HOSTILE]], caption=HOSTILE))
    variants = {HOSTILE: {"window_size": 50}}
    results = compare([thermostat()], variants)
    assert_shown_as_text(comparison_table(results, variants, {"window_size": 100}))


def test_the_live_table_shows_device_ids_and_firmware_as_text() -> None:
    live = LiveTable(Settings.from_env(bootstrap_servers="localhost:1"))
    live._keep(ReadingBatch([thermostat(device_id=HOSTILE, firmware=HOSTILE)], [0]))
    live.source.metrics.record_error(RuntimeError("broker gone"), status=HOSTILE)
    live.render()
    assert_shown_as_text(live.table.value)
    assert_shown_as_text(live.status.value)
