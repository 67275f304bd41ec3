"""Event-level scoring on hand-computed cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workbench.alerts.model import Alert
from workbench.evaluation.events import score_events
from workbench.simulator.anomalies import Truth

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def truth(device: str, kind: str, start: float, end: float) -> Truth:
    return Truth(
        anomaly_id=f"{device}-{kind}-{start}",
        device_id=device,
        device_type="env_sensor",
        kind=kind,
        metric="temperature",
        start=s(start),
        end=s(end),
        magnitude=5.0,
    )


def alert(device: str, kind: str, first: float, last: float) -> Alert:
    return Alert(
        alert_id=f"{device}-{first}",
        device_id=device,
        device_type="env_sensor",
        kind=kind,
        metric="temperature",
        severity="high",
        score=0.9,
        first_seen=s(first),
        last_seen=s(last),
        readings=3,
        observed=None,
        expected_low=None,
        expected_high=None,
        explanation="",
    )


def test_hand_computed_precision_recall_f1_and_delay() -> None:
    truths = [
        truth("a", "spike", 100, 100),  # found by a 100–110 alert: delay 0 s
        truth("a", "level_shift", 500, 700),  # found at 530: delay 30 s
        truth("b", "drift", 100, 400),  # missed
        truth("c", "dropout", 100, 200),  # found 40 s after it ended (within grace): delay 140 s
    ]
    alerts = [
        alert("a", "spike", 100, 110),
        alert("a", "level_shift", 530, 690),
        alert("a", "level_shift", 650, 660),  # a second alert on the same truth: still true
        alert("b", "spike", 1000, 1010),  # overlaps nothing: false positive named 'spike'
        alert("c", "dropout", 240, 240),
        alert("d", "outlier", 0, 10),  # a device with no truth: false positive
    ]
    scores = score_events(truths, alerts, grace=timedelta(seconds=60))
    overall = scores.overall
    assert (overall.truths, overall.found, overall.alerts, overall.true_alerts) == (4, 3, 6, 4)
    assert overall.recall == pytest.approx(0.75)
    assert overall.precision == pytest.approx(4 / 6)
    assert overall.f1 == pytest.approx(2 * 0.75 * (4 / 6) / (0.75 + 4 / 6))
    assert scores.by_kind["spike"].recall == 1.0
    assert scores.by_kind["spike"].precision == pytest.approx(0.5)  # 1 true + 1 false 'spike'
    assert scores.by_kind["drift"].recall == 0.0
    assert scores.by_kind["level_shift"].precision == 1.0
    assert sorted(scores.delays_s) == [0.0, 30.0, 140.0]
    assert scores.delay_percentiles()["median_s"] == 30.0
    assert [t.kind for t in scores.missed] == ["drift"]
    assert {a.device_id for a in scores.false_positives} == {"b", "d"}


def test_grace_decides_whether_a_late_alert_still_counts() -> None:
    truths = [truth("c", "dropout", 100, 200)]
    late = [alert("c", "dropout", 240, 240)]
    assert score_events(truths, late, grace=timedelta(seconds=60)).overall.found == 1
    assert score_events(truths, late, grace=timedelta(seconds=30)).overall.found == 0


def test_no_alerts_and_no_truths() -> None:
    quiet = score_events([truth("a", "spike", 1, 1)], [])
    assert quiet.overall.recall == 0.0 and quiet.overall.f1 == 0.0
    clean = score_events([], [alert("a", "spike", 0, 1)])
    assert clean.overall.precision == 0.0
