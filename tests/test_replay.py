"""Replaying recorded readings with other settings (dashboard preview, tuning notebook)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from workbench.evaluation.replay import replay
from workbench.simulator.simulation import simulate


@pytest.fixture(scope="module")
def recorded() -> tuple[list, list]:
    readings, truths = [], []
    for reading, due in simulate(200, 200, 24_000, seed=3):
        readings.append(reading)
        truths.extend(due)
    return readings, truths


def test_a_lower_threshold_raises_more_alerts_and_truth_scores_them(recorded) -> None:
    readings, truths = recorded
    strict = replay(readings, {"anomaly_threshold": 0.6}, truths=truths)
    default = replay(readings, {}, truths=truths)
    loose = replay(readings, {"anomaly_threshold": 0.05}, truths=truths)
    assert len(strict.alerts) < len(default.alerts) < len(loose.alerts)
    assert default.scores is not None and default.scores.overall.truths == len(truths)
    assert default.scores.overall.recall >= strict.scores.overall.recall
    assert loose.scores.overall.precision < default.scores.overall.precision
    assert "alerts in 2.0 min" in default.summary() and "/min" in default.summary()


def test_only_incidents_that_began_inside_the_window_count(recorded) -> None:
    readings, _ = recorded
    whole = replay(readings, {"anomaly_threshold": 0.05})
    last_minute = replay(readings, {"anomaly_threshold": 0.05}, window_s=60)
    assert last_minute.window_end - last_minute.window_start == timedelta(seconds=60)
    assert all(a.first_seen >= last_minute.window_start for a in last_minute.alerts)
    assert 0 < len(last_minute.alerts) < len(whole.alerts)


def test_bad_settings_are_refused_before_any_work(recorded) -> None:
    readings, _ = recorded
    with pytest.raises(ValueError, match="anomaly_threshold"):
        replay(readings, {"anomaly_threshold": 2.0})
    with pytest.raises(ValueError, match="nothing to replay"):
        replay([], {})
