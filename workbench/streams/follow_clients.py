"""The consumers views follow topics with, on either client: kafka-python or librdkafka.

A follower reads whole topics each from its own start, chosen partitions from a time, or one
topic as a consumer group's share. With ``confluent`` chosen, records are fetched and parsed in
librdkafka's C threads: a view following a busy topic (the devices' states at 10,000 readings/s)
then spends little of its kernel's core on it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from workbench.config import Settings
from workbench.streams.clients import FETCH_MIN_BYTES, confluent_take
from workbench.streams.records import Record

log = logging.getLogger(__name__)
MAX_RECORDS = 5000
"""Most records one poll hands over."""


class NoTopicYet(LookupError):
    """A followed topic does not exist yet (its maker, a worker or a simulator, has not run)."""


class FollowConsumer(Protocol):
    """What a follower polls; used from one thread only."""

    def poll(self, timeout_s: float) -> dict[str, list[Record]]:
        """The records that arrived, by topic (empty after ``timeout_s`` with none)."""

    def commit(self) -> None:
        """Commit the group's position after what was polled (group consumers only)."""

    def close(self) -> None: ...


def open_follow_consumer(
    settings: Settings,
    starts: dict[str, str],
    *,
    group_id: str | None = None,
    partitions: list[int] | None = None,
    since: datetime | None = None,
    wait_s: float = 0.5,
    gather: bool = False,
) -> FollowConsumer:
    """A consumer of the topics in ``starts`` (topic → 'earliest' or 'latest').

    ``group_id``: one topic, as that group's share, from its committed offsets. ``partitions``:
    those of one topic, from the first record at or after ``since``. Otherwise every partition of
    each topic. ``wait_s``: how long the broker holds a fetch while there is nothing new (an
    idle follower's round trips). ``gather``: the broker holds each fetch that long unless 64 KiB
    are waiting (fewer, larger fetches for a follower that batches anyway). Raises NoTopicYet
    while a topic does not exist (the caller retries).
    """
    if (group_id is not None or partitions is not None) and len(starts) != 1:
        raise ValueError("a group or chosen partitions follow exactly one topic")
    opener = _ConfluentFollow if settings.backend == "confluent" else _KafkaPythonFollow
    min_bytes = FETCH_MIN_BYTES if gather else 1
    return opener(settings, Plan(starts, group_id, partitions, since, wait_s, min_bytes))


@dataclass(frozen=True)
class Plan:
    """What a follow consumer reads (``open_follow_consumer``'s arguments)."""

    starts: dict[str, str]
    group_id: str | None
    partitions: list[int] | None
    since: datetime | None
    wait_s: float
    min_bytes: int


class _KafkaPythonFollow:
    def __init__(self, settings: Settings, plan: Plan) -> None:
        from kafka import KafkaConsumer, TopicPartition

        (topic, start), *_ = plan.starts.items()
        whole = plan.group_id is None and plan.partitions is None and len(plan.starts) > 1
        self._consumer = consumer = KafkaConsumer(
            *(() if whole or plan.partitions is not None else (topic,)),
            bootstrap_servers=settings.bootstrap,
            group_id=plan.group_id,
            auto_offset_reset=start,
            enable_auto_commit=False,
            fetch_max_wait_ms=int(plan.wait_s * 1000),
            fetch_min_bytes=plan.min_bytes,
            metadata_max_age_ms=10_000,
            **settings.kafka_python_security(),
        )
        try:
            if plan.partitions is not None:
                tps = [TopicPartition(topic, p) for p in plan.partitions]
                consumer.assign(tps)
                if plan.since is not None:
                    found = consumer.offsets_for_times(dict.fromkeys(tps, _ms(plan.since)))
                    ends = consumer.end_offsets(tps)
                    for tp in tps:
                        consumer.seek(tp, ends[tp] if found[tp] is None else found[tp].offset)
            elif whole:
                found = {t: consumer.partitions_for_topic(t) for t in plan.starts}
                _check_found(found)
                by_topic = {
                    t: [TopicPartition(t, p) for p in sorted(ps)] for t, ps in found.items()
                }
                consumer.assign([tp for tps in by_topic.values() for tp in tps])
                for t, tps in by_topic.items():
                    latest = plan.starts[t] == "latest"
                    (consumer.seek_to_end if latest else consumer.seek_to_beginning)(*tps)
        except Exception:
            consumer.close()
            raise

    def poll(self, timeout_s: float) -> dict[str, list[Record]]:
        polled = self._consumer.poll(int(timeout_s * 1000), max_records=MAX_RECORDS)
        out: dict[str, list[Record]] = {}
        for tp, batch in polled.items():
            out.setdefault(tp.topic, []).extend(
                Record(tp.partition, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
                for r in batch
            )
        return out

    def commit(self) -> None:
        self._consumer.commit()

    def close(self) -> None:
        self._consumer.close()


class _ConfluentFollow:
    def __init__(self, settings: Settings, plan: Plan) -> None:
        from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

        (topic, start), *_ = plan.starts.items()
        self._consumer = consumer = Consumer(
            {
                "bootstrap.servers": settings.bootstrap,
                **settings.security,
                "group.id": plan.group_id or f"workbench-nogroup-{time.time_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": start,
                "enable.partition.eof": False,
                "fetch.wait.max.ms": int(plan.wait_s * 1000),
                "fetch.min.bytes": plan.min_bytes,
                "topic.metadata.refresh.interval.ms": 10_000,
            }
        )
        try:
            if plan.group_id is not None:
                consumer.subscribe([topic])
                return
            if plan.partitions is None:
                metadata = consumer.list_topics(timeout=10).topics
                found = {t: metadata[t].partitions if t in metadata else None for t in plan.starts}
                _check_found(found)
                end = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}
                consumer.assign(
                    [
                        TopicPartition(t, p, end[start_t])
                        for t, start_t in plan.starts.items()
                        for p in sorted(found[t])
                    ]
                )
                return
            at = OFFSET_END if start == "latest" else OFFSET_BEGINNING
            tps = [TopicPartition(topic, p, at) for p in plan.partitions]
            if plan.since is not None:  # a partition with nothing since then: from its end
                asked = [TopicPartition(topic, p, _ms(plan.since)) for p in plan.partitions]
                found_at = consumer.offsets_for_times(asked, timeout=10)
                tps = [
                    TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                    for tp in found_at
                ]
            consumer.assign(tps)
        except Exception:
            consumer.close()
            raise

    def poll(self, timeout_s: float) -> dict[str, list[Record]]:
        messages = confluent_take(self._consumer, MAX_RECORDS, timeout_s)
        out: dict[str, list[Record]] = {}
        for m in messages:
            if m.error() is not None:  # a client event, not a record: the others stand
                log.warning("Kafka consumer error: %s", m.error())
                continue
            out.setdefault(m.topic(), []).append(
                Record(
                    m.partition(),
                    m.offset(),
                    m.timestamp()[1],
                    m.key(),
                    m.value(),
                    tuple(m.headers() or ()),
                )
            )
        return out

    def commit(self) -> None:
        self._consumer.commit(asynchronous=False)

    def close(self) -> None:
        self._consumer.close()


def _ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _check_found(found: dict[str, Any]) -> None:
    missing = [t for t, parts in found.items() if not parts]
    if missing:  # the workers make them: wait for them (the caller retries)
        raise NoTopicYet(f"no topic {', '.join(missing)} yet")
