"""Read the latest records of a topic, bounded: what is there now, never a wait for what comes.

Notebooks use it to peek at a topic and to record a window of readings for replay. The read stops
at each partition's end offset as it was when the read began, so it ends even on a busy topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from workbench.config import Settings
from workbench.schema import Reading
from workbench.streams.clients import RecordBatch
from workbench.streams.validate import ReadingValidator, Rejected


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as stored: where it is, its producer timestamp (ms), bytes and headers."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def read_recent(
    settings: Settings,
    topic: str,
    limit: int,
    since: datetime | None = None,
    timeout_s: float = 60.0,
) -> list[Record]:
    """The latest ``limit`` records of ``topic`` (produced at or after ``since``), oldest first."""
    from kafka import KafkaConsumer, TopicPartition

    if limit < 1:
        raise ValueError(f"limit={limit}: it must be at least 1 record")
    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **settings.kafka_python_security(),
    )
    records: list[Record] = []
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise ValueError(f"there is no topic {topic!r} on {settings.bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        starts = {tp: max(begins[tp], ends[tp] - limit) for tp in tps}
        if since is not None:
            found = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
            for tp, at in found.items():
                starts[tp] = max(starts[tp], ends[tp] if at is None else at.offset)
        for tp in tps:
            consumer.seek(tp, starts[tp])
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        deadline = time.monotonic() + timeout_s
        while remaining:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic!r} took over {timeout_s:.0f} s")
            for tp, batch in consumer.poll(200).items():
                records.extend(
                    Record(tp.partition, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
                    for r in batch
                    if r.offset < ends[tp]
                )
            for tp in list(remaining):
                if consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
                    consumer.pause(tp)
    finally:
        consumer.close()
    records.sort(key=lambda r: (r.timestamp_ms, r.partition, r.offset))
    return records[-limit:]


def decode_readings(
    records: list[Record], topic: str = "", validator: ReadingValidator | None = None
) -> tuple[list[Reading], list[Rejected]]:
    """Validate records as the live pipeline does: the readings, and the rejects with reasons."""
    runs = [
        (r.partition, i)
        for i, r in enumerate(records)
        if i == 0 or records[i - 1].partition != r.partition
    ]
    batch = RecordBatch(
        topic,
        [r.value for r in records],
        [r.key for r in records],
        [r.timestamp_ms for r in records],
        {},
        runs,
        lambda i: (records[i].partition, records[i].offset),
    )
    decoded = (validator or ReadingValidator())(batch)
    return decoded.readings, decoded.rejected
