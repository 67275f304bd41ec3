"""Read stored records of chosen partitions up to their end offsets, bounded: what is there now.

Notebooks peek at a topic with it, and a worker restores a changelog with it. The read stops at each
partition's end offset as it was when the read began, so it ends even on a busy topic.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from workbench.config import Settings


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as stored: where it is, its producer timestamp (ms), bytes and headers."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


Starts = Callable[[Any, list[Any], dict[Any, int]], dict[Any, int]]
"""(consumer, partitions, end offsets) → the offset to start each partition from."""


def from_beginning(consumer: Any, tps: list[Any], _ends: dict[Any, int]) -> dict[Any, int]:
    """Start every partition at its first stored record."""
    return consumer.beginning_offsets(tps)


def read_partitions(
    settings: Settings,
    topic: str,
    partitions: Iterable[int] | None = None,
    starts: Starts = from_beginning,
    timeout_s: float = 60.0,
) -> list[Record]:
    """The records of ``partitions`` (default: all) from ``starts`` to their end offsets now,
    in offset order per partition. Raises ValueError for a topic that does not exist."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **settings.kafka_python_security(),
    )
    records: list[Record] = []
    try:
        known = consumer.partitions_for_topic(topic)
        if not known:
            raise ValueError(f"there is no topic {topic!r} on {settings.bootstrap}")
        chosen = sorted(known if partitions is None else set(partitions) & known)
        tps = [TopicPartition(topic, p) for p in chosen]
        if not tps:
            return records
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        begin = starts(consumer, tps, ends)
        for tp in tps:
            consumer.seek(tp, begin[tp])
        remaining = {tp for tp in tps if begin[tp] < ends[tp]}
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
    return records
