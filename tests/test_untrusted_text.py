"""Text from devices, alerts and viewers reaches the page and the CSV exports only neutralised.

A device id, firmware string, alert explanation or a name typed into a box is data, never markup
for the browser nor a formula for a spreadsheet. Pure rendering, fed from memory (no Kafka).
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import msgspec
import pytest

from workbench.alerts.model import Alert
from workbench.schema import Thermostat
from workbench.ui.export import alerts_csv, readings_csv

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
    assert row["lon"] == "-3.2" and row["temperature"] == "-5.0"
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
