"""``workbench bench scale`` end to end on the real broker, small: every figure is there, each
with its unit, and the targets are checked (a run this small misses them: exit code 1); a
backlog too small to time is refused with what to offer."""

from __future__ import annotations

import json

import pytest

from workbench.bench.scale import BacklogTooSmall, check_left_to_time, format_table
from workbench.cli import main
from workbench.config import Settings


@pytest.mark.kafka
def test_bench_scale_measures_workers_with_full_detection_and_checks_the_targets(
    kafka: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--workers", "1", "--readings", "150000", "--devices", "3000"]
    args += ["--rates", "500", "--seconds", "4"]
    code = main(["bench", "scale", "--bootstrap-servers", kafka.bootstrap, *args, "--json"])
    figures = json.loads(capsys.readouterr().out)
    assert figures["raw_client_readings_per_s"] > 0
    (row,) = figures["workers"]
    assert row["workers"] == 1 and 0 < row["readings_per_s"] < figures["raw_client_readings_per_s"]
    assert 37_500 <= row["measured_readings"] <= 150_000 and row["measured_s"] > 0
    (latency,) = row["latency"]
    assert latency["offered_readings_per_s"] == 500
    assert 250 <= latency["handled_readings_per_s"] <= 750
    ms = latency["latency_ms"]
    assert 0 < ms["p50"] <= ms["p95"] <= ms["p99"] < 10_000
    one = figures["targets"]["one_worker_readings_per_s"]
    assert one == {"target": 100_000.0, "met": row["readings_per_s"] >= 100_000}
    assert code == (0 if figures["ok"] else 1)
    table = format_table(figures)
    assert "readings/s (full detection)" in table and "p99 ms" in table
    assert "target one worker readings per s ≥ 100,000.0: NOT met" in table


def test_a_backlog_handled_before_the_workers_settled_is_refused_with_what_to_offer() -> None:
    check_left_to_time(150_000, 100_000, 1)  # a third left: timed
    with pytest.raises(BacklogTooSmall) as refused:
        check_left_to_time(20_000, 20_000, 2)  # one poll took it all
    message = str(refused.value)
    assert "2 worker(s) handled 20,000 of the 20,000 readings" in message
    assert "offer at least 40,000 readings (--readings)" in message
