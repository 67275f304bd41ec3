"""Helpers for the integration tests: produce readings, consume them through the real source."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from tests.cli_helpers import RunningCommand
from workbench import schema
from workbench.config import Settings
from workbench.streams.clients import make_producer
from workbench.streams.source import from_kafka_readings
from workbench.streams.validate import ReadingBatch

#: Base of the ports the tests' brokers and servers use (base … base + 400); set it to run two
#: checkouts' suites side by side. Below Linux's ephemeral range (32768–60999), so an outgoing
#: connection never happens to hold one of them.
PORT_BASE = int(os.environ.get("WORKBENCH_TEST_PORT_BASE", "19092"))


def env_reading(device: int, seq: int) -> schema.EnvSensor:
    """A valid reading from device ``device`` with sequence number ``seq``."""
    return schema.EnvSensor(
        device_id=f"env-{device:04d}",
        ts=datetime.now(UTC),
        seq=seq,
        lat=52.0 + device / 1000,
        lon=4.0,
        firmware="1.0.0",
        temperature=4.0 + (seq % 10) / 10,
        humidity=60.0,
        battery=0.9,
    )


def produce_readings(settings: Settings, topic: str, devices: int, per_device: int) -> set:
    """Produce ``devices × per_device`` readings keyed by device; returns their (device_id, seq)."""
    producer = make_producer(settings)
    sent = set()
    for seq in range(per_device):
        for d in range(devices):
            r = env_reading(d, seq)
            producer.send(topic, schema.encode(r), key=r.device_id.encode())
            sent.add((r.device_id, r.seq))
    producer.flush()
    producer.close()
    assert producer.deliveries().delivered == len(sent)
    return sent


async def consume(
    settings: Settings,
    topic: str,
    group: str,
    until: Callable[[list], bool],
    timeout_s: float = 60,
    **options: object,
) -> tuple[list, object]:
    """Run the real source until ``until(readings)``; returns (readings as they came, source)."""
    source = from_kafka_readings(settings, topic=topic, group_id=group, **options)
    got: list = []

    def keep(batch: ReadingBatch) -> None:
        got.extend(batch.readings)
        if until(got):
            source.stop()  # from inside the pipeline: this batch is the last one handled

    source.sink(keep)
    source.start()
    try:
        await asyncio.wait_for(source.wait_stopped(), timeout_s)
    except TimeoutError:
        raise TimeoutError(f"only {len(got):,} readings after {timeout_s:.0f} s") from None
    finally:
        source.stop()
        await source.wait_stopped()
    return got, source


def start_workbench_up(
    kafka_port: int,
    data_dir: Path,
    *args: str,
    workbench: Sequence[str] | None = None,
    cwd: Path | None = None,
) -> RunningCommand:
    """`workbench up *args` on its own local broker and data dir, as a user's script starts it
    (see RunningCommand); ``workbench`` is the program to run (default: this checkout's)."""
    env = {
        "WORKBENCH_KAFKA_PORT": str(kafka_port),
        "WORKBENCH_DATA_DIR": str(data_dir),
        "KAFKA_BOOTSTRAP_SERVERS": None,  # its own local broker, whatever the suite runs on
    }
    return RunningCommand("up", *args, env=env, program=workbench, cwd=cwd)
