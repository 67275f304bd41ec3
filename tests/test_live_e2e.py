"""End to end on the real broker: simulator → Kafka → source, and ``workbench up`` with Ctrl-C."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from tests import processes
from tests.kafka_helpers import PORT_BASE, consume, start_workbench_up
from tests.test_ingest_kafka import read_topic
from workbench.config import Settings
from workbench.simulator import decode_truth, run_simulator

pytestmark = pytest.mark.kafka


def test_simulated_fleet_arrives_complete_and_in_order_per_device(
    kafka: Settings, topics: dict[str, str]
) -> None:
    stats = run_simulator(
        kafka,
        devices=200,
        rate=4000,
        count=12_000,
        anomaly_rate=0.5,
        seed=7,
        readings_topic=topics["readings"],
        truth_topic=topics["truth"],
    )
    assert stats.sent == stats.delivered == 12_000
    readings, source = asyncio.run(
        consume(
            kafka,
            topics["readings"],
            f"g-{uuid.uuid4().hex[:6]}",
            until=lambda got: len(got) >= stats.sent,
            deadletter_topic=topics["deadletter"],
        )
    )
    assert len(readings) == stats.sent
    assert source.metrics.dead_lettered == 0  # everything the simulator sends is valid
    last_seq: dict[str, int] = {}
    for r in readings:  # Kafka keeps each device's readings in order (keyed by device)
        assert r.seq > last_seq.get(r.device_id, -1), (r.device_id, r.seq)
        last_seq[r.device_id] = r.seq
    assert len(last_seq) == 200
    assert len({r.device_type for r in readings}) == 4

    truths = [
        decode_truth(rec.value) for rec in read_topic(kafka, topics["truth"], stats.anomalies)
    ]
    assert len(truths) == stats.anomalies > 0
    devices = {r.device_id for r in readings}
    for t in truths:
        assert t.device_id in devices and t.start <= t.end


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_workbench_up_shows_live_figures_and_ctrl_c_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    port = PORT_BASE + 200
    with start_workbench_up(
        port, tmp_path, "--devices", "20", "--rate", "400", "--dashboard-port", str(PORT_BASE + 250)
    ) as up:
        totals: list[int] = []
        deadline = time.monotonic() + 120
        while len(totals) < 2 and time.monotonic() < deadline and up.proc.poll() is None:
            time.sleep(0.5)
            totals = [
                int(m.replace(",", "")) for m in re.findall(r"total ([\d,]+) msgs", up.output)
            ]
            totals = [t for t in totals if t > 0]
        assert len(totals) >= 2, up.output
        assert totals[-1] > totals[0]  # live figures move
        assert _port_open(port)
        code, _ = up.stop(signal.SIGINT, 90)  # a script's background job: SIGINT was ignored
        assert code == 0, up.output
    output = up.output
    assert "simulator:" in output and "readings/s" in output
    # Stopping, the simulator says what the broker acknowledged and what it did not.
    assert re.search(
        r"simulator: stopped: [\d,]+ of [\d,]+ readings delivered .*· 0 not delivered", output
    )
    assert f"dashboard: http://localhost:{PORT_BASE + 250}/" in output
    assert "stopped" in output
    assert not _port_open(port)
    assert processes.using(tmp_path) == []  # the broker and Voilà it started are gone too
    assert not _port_open(PORT_BASE + 250)
