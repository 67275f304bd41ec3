"""The consumers views follow topics with, on either client: kafka-python or librdkafka.

A follower reads whole topics each from its own start, chosen partitions from a time, or one
topic as a consumer group's share. With ``confluent`` chosen, records are fetched and parsed in
librdkafka's C threads: a view following a busy topic (the devices' states at 10,000 readings/s)
then spends little of its kernel's core on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from workbench.config import Settings
from workbench.streams.clients import FETCH_MIN_BYTES, confluent_take
from workbench.streams.records import Record

log = logging.getLogger(__name__)
MAX_RECORDS = 5000
"""Most records one poll hands over."""
LOOK_AGAIN_S = 5.0
"""How often a follower asks whether an optional topic it lacks has been made."""


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
    optional: frozenset[str] = frozenset(),
) -> FollowConsumer:
    """A consumer of the topics in ``starts`` (topic → 'earliest' or 'latest').

    ``group_id``: one topic, as that group's share, from its committed offsets. ``partitions``:
    those of one topic, from the first record at or after ``since``. Otherwise every partition of
    each topic. ``wait_s``: how long the broker holds a fetch while there is nothing new (an
    idle follower's round trips). ``gather``: the broker holds each fetch that long unless 64 KiB
    are waiting (fewer, larger fetches for a follower that batches anyway). Raises NoTopicYet
    while a topic does not exist (the caller retries), unless it is one of the ``optional``
    whole topics: those are read, from their beginning, once they are made (only records
    produced since the follower began can be in them).
    """
    if (group_id is not None or partitions is not None) and len(starts) != 1:
        raise ValueError("a group or chosen partitions follow exactly one topic")
    opener = _ConfluentFollow if settings.backend == "confluent" else _KafkaPythonFollow
    min_bytes = FETCH_MIN_BYTES if gather else 1
    return opener(settings, Plan(starts, group_id, partitions, since, wait_s, min_bytes, optional))


@dataclass(frozen=True)
class Plan:
    """What a follow consumer reads (``open_follow_consumer``'s arguments)."""

    starts: dict[str, str]
    group_id: str | None
    partitions: list[int] | None
    since: datetime | None
    wait_s: float
    min_bytes: int
    optional: frozenset[str] = frozenset()


class _Lacking:
    """The optional topics a whole-topic follower lacks, looked for again every LOOK_AGAIN_S;
    made from what was ``found`` (topic → its partitions or nothing), it raises NoTopicYet
    for a missing topic that is not optional."""

    def __init__(self, found: dict[str, Any], plan: Plan) -> None:
        _check_found({t: parts for t, parts in found.items() if t not in plan.optional})
        self.topics = [t for t, parts in found.items() if not parts]
        self._looked = time.monotonic()

    def due(self) -> bool:
        """True when some topic is lacking and it is time to look again."""
        if not self.topics or time.monotonic() - self._looked < LOOK_AGAIN_S:
            return False
        self._looked = time.monotonic()
        return True

    def made(self, found: dict[str, Any]) -> list[str]:
        """Those lacking that ``found`` (topic → its partitions or nothing) now has."""
        made = [t for t in self.topics if found.get(t)]
        self.topics = [t for t in self.topics if t not in made]
        return made


class _KafkaPythonFollow:
    def __init__(self, settings: Settings, plan: Plan) -> None:
        from kafka import KafkaConsumer, TopicPartition

        (topic, start), *_ = plan.starts.items()
        whole = plan.group_id is None and plan.partitions is None and len(plan.starts) > 1
        self._lacking = _Lacking({}, plan)
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
                self._lacking = _Lacking(found, plan)
                self._adopt({t: ps for t, ps in found.items() if ps}, plan.starts)
        except Exception:
            consumer.close()
            raise

    def _adopt(self, found: dict[str, set[int]], starts: dict[str, str]) -> None:
        """Add these topics' partitions to the assignment, each read from its start."""
        from kafka import TopicPartition

        by_topic = {t: [TopicPartition(t, p) for p in sorted(ps)] for t, ps in found.items()}
        held = list(self._consumer.assignment())
        self._consumer.assign(held + [tp for tps in by_topic.values() for tp in tps])
        for t, tps in by_topic.items():
            latest = starts[t] == "latest"
            (self._consumer.seek_to_end if latest else self._consumer.seek_to_beginning)(*tps)

    def poll(self, timeout_s: float) -> dict[str, list[Record]]:
        if self._lacking.due():
            found = {t: self._consumer.partitions_for_topic(t) for t in self._lacking.topics}
            made = self._lacking.made(found)  # all of a topic made since is new
            if made:
                self._adopt({t: found[t] for t in made}, dict.fromkeys(made, "earliest"))
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
        self._lacking = _Lacking({}, plan)
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
                found = self._partitions(plan.starts)
                self._lacking = _Lacking(found, plan)
                end = {"earliest": OFFSET_BEGINNING, "latest": OFFSET_END}
                consumer.assign(
                    [
                        TopicPartition(t, p, end[start_t])
                        for t, start_t in plan.starts.items()
                        for p in sorted(found[t] or ())
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

    def _partitions(self, topics: Iterable[str]) -> dict[str, Any]:
        metadata = self._consumer.list_topics(timeout=10).topics
        return {t: metadata[t].partitions if t in metadata else None for t in topics}

    def poll(self, timeout_s: float) -> dict[str, list[Record]]:
        if self._lacking.due():  # a topic made since: all of it is new
            from confluent_kafka import OFFSET_BEGINNING, TopicPartition

            found = self._partitions(self._lacking.topics)
            made = self._lacking.made(found)
            if made:
                self._consumer.incremental_assign(
                    [TopicPartition(t, p, OFFSET_BEGINNING) for t in made for p in sorted(found[t])]
                )
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
