"""Alerts: one incident is one alert with a stable id; severity and explanation make sense."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workbench.alerts.manager import AlertManager
from workbench.alerts.model import SeverityPolicy
from workbench.alerts.publish import decode_alert, encode_alert
from workbench.models.base import Finding

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def finding(seconds: float, seq: int, score: float = 0.9, **changes: object) -> Finding:
    values = {
        "device_id": "env_sensor-0001",
        "device_type": "env_sensor",
        "kind": "level_shift",
        "metric": "temperature",
        "score": score,
        "ts": T0 + timedelta(seconds=seconds),
        "seq": seq,
        "observed": 12.5,
        "expected_low": 2.0,
        "expected_high": 6.0,
        "detector": "test",
    }
    values.update(changes)
    return Finding(**values)  # type: ignore[arg-type]


def run(manager: AlertManager, findings: list[Finding]) -> list:
    published = []
    for f in findings:
        published += manager.process([f], now=f.ts)
    return published


def test_one_incident_is_one_alert_updated_while_it_lasts() -> None:
    manager = AlertManager()
    published = run(manager, [finding(5 * i, i) for i in range(20)])  # 95 s of findings
    assert {a.alert_id for a in published} == {published[0].alert_id}
    assert len(published) < 6  # opened plus a few refreshes, not one per reading
    (alert,) = manager.active
    assert alert.readings == 20
    assert alert.first_seen == T0 and alert.last_seen == T0 + timedelta(seconds=95)


def test_a_quiet_gap_closes_the_incident_and_a_later_one_gets_a_new_id() -> None:
    manager = AlertManager(merge_gap=timedelta(seconds=60))
    first = run(manager, [finding(0, 0), finding(10, 2)])
    closed = manager.process([], now=T0 + timedelta(seconds=200))
    assert [a.status for a in closed] == ["closed"] and closed[0].alert_id == first[0].alert_id
    second = run(manager, [finding(300, 60)])
    assert second[0].alert_id != first[0].alert_id and second[0].status == "active"


def test_replaying_the_same_readings_gives_the_same_alert_ids() -> None:
    findings = [finding(5 * i, i) for i in range(5)] + [finding(500, 100, kind="spike")]
    once = {a.alert_id for a in run(AlertManager(), findings)}
    again = {a.alert_id for a in run(AlertManager(), findings)}
    assert once == again and len(once) == 2


def test_one_sensor_is_one_incident_whatever_the_detectors_call_it() -> None:
    manager = AlertManager()
    manager.process(
        [
            finding(0, 0, kind="spike", score=0.7),
            finding(5, 1, kind="level_shift", score=0.9),  # the strongest names the incident
            finding(5, 1, metric="humidity"),
            finding(0, 0, device_id="env_sensor-0002"),
        ],
        now=T0 + timedelta(seconds=5),
    )
    incidents = {(a.device_id, a.metric): a for a in manager.active}
    assert len(incidents) == 3
    assert incidents["env_sensor-0001", "temperature"].kind == "level_shift"
    assert incidents["env_sensor-0001", "temperature"].readings == 2


def test_severity_follows_score_metric_criticality_and_duration() -> None:
    policy = SeverityPolicy()
    assert policy.severity(0.95, "temperature", 0) == "high"
    assert policy.severity(0.95, "battery", 0) == "low"  # 0.95 × 0.5 criticality
    assert policy.severity(0.6, "temperature", 0) == "medium"
    assert policy.severity(0.6, "temperature", 10) == "high"  # long incidents escalate
    manager = AlertManager()
    published = run(manager, [finding(10 * i, i, score=0.6) for i in range(40)])
    assert published[0].severity == "medium" and published[-1].severity == "high"


def test_severity_cut_offs_are_validated() -> None:
    with pytest.raises(ValueError, match="out of range"):
        AlertManager(SeverityPolicy(high=0.5, medium=0.7))
    manager = AlertManager()
    with pytest.raises(ValueError, match="high"):
        manager.set_policy(SeverityPolicy(high=1.5))


def test_explanation_names_metric_observed_and_expected_with_units() -> None:
    (alert,) = AlertManager().process([finding(0, 0)], now=T0)
    assert alert.explanation == (
        "level shift in temperature on env_sensor-0001: observed 12.50 °C, expected 2.00–6.00 °C"
    )
    (moved,) = AlertManager().process(
        [finding(0, 0, kind="location_jump", metric="location", observed=42.0)], now=T0
    )
    assert moved.explanation == (
        "location jump on env_sensor-0001: reported 42.0 km from its usual place"
    )
    (silence,) = AlertManager().process([finding(0, 0, kind="dropout", metric=None)], now=T0)
    assert "sent nothing" in silence.explanation


def test_history_is_bounded() -> None:
    manager = AlertManager(history=50)
    for i in range(500):
        manager.process([finding(0, 0, device_id=f"d-{i}")], now=T0)
    assert len(manager.history) == 50
    assert len(manager.active) <= 50


def test_alerts_round_trip_through_the_wire_form() -> None:
    (alert,) = AlertManager().process([finding(0, 0)], now=T0)
    assert decode_alert(encode_alert(alert)) == alert
