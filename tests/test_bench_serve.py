"""``workbench bench serve`` end to end on the real broker, small: its figures are all there."""

from __future__ import annotations

import json

import pytest

from workbench.cli import main
from workbench.config import Settings

pytestmark = pytest.mark.kafka


def test_bench_serve_reports_delivery_rates_and_latency(
    kafka: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--clients", "3", "--rate", "500", "--devices", "50", "--seconds", "3", "--warmup", "1"]
    code = main(["bench", "serve", "--bootstrap-servers", kafka.bootstrap, *args, "--json"])
    assert code == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["clients"] == 3 and figures["sockets"] == 6
    assert 250 <= figures["ingested_readings_per_s"] <= 1000
    assert figures["messages_per_s"] >= 3  # at least each /metrics socket's one a second
    latency = figures["delivery_latency_ms"]
    assert 0 <= latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert figures["dropped_msgs"] == 0
