"""Kafka client backends behind one small interface: kafka-python (default) and confluent-kafka.

A consumer backend polls raw record batches and commits explicit offsets; a producer backend sends
bytes and counts the broker's delivery reports. Both are blocking and not thread-safe: callers keep
each one on a single thread (the delivery counts alone may be read from any).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from workbench.config import Settings

log = logging.getLogger(__name__)

FETCH_MIN_BYTES = 64 * 1024
"""A fetch answers once this much is waiting (about 250 readings): a fast stream fills it at
once, so its batches are neither held nor smaller."""
FETCH_WAIT_MS = 500
"""...or once the broker has held it this long: a slow stream is then handed over in batches
about twice a second instead of 50 tiny ones, so the pipeline's CPU follows the data rate (a
worker at 100 readings/s: 10.2 % of a core with a 250 ms hold, 6.5 % with this; `consume`
before it, 47 % with a 20 ms one). The price is up to this much latency while the stream is
slow."""
# A killed worker's partitions move to the others after this long (clients default to 45 s).
SESSION_TIMEOUT_MS = 10_000


@dataclass(slots=True)
class RecordBatch:
    """Raw records from one poll of one topic, as parallel lists (cheap to build, cheap to walk)."""

    topic: str
    values: list[bytes | None]
    keys: list[bytes | None]
    """The records' keys (a reading's key must be its device id)."""
    timestamps_ms: list[int]
    """The records' Kafka timestamps (producer create time), in ms since the epoch."""
    next_offsets: dict[int, int]
    """partition → the offset to commit once this batch is processed (last offset + 1)."""
    runs: list[tuple[int, int]]
    """(partition, index of its first record) for each run of records from one partition."""
    locate: Callable[[int], tuple[int, int]] = field(repr=False)
    """index → (partition, offset) of one record, for dead-lettering."""

    def __len__(self) -> int:
        return len(self.values)


class ConsumerBackend(Protocol):
    """What a source needs from a Kafka consumer."""

    def poll(self, max_records: int, timeout_s: float) -> RecordBatch | None: ...
    def commit(self, offsets: dict[int, int]) -> None: ...
    def lag(self) -> dict[int, int] | None:
        """Messages not yet read per assigned partition; None when unknown."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Deliveries:
    """What a producer did with the messages handed to it, from the broker's delivery reports."""

    sent: int
    """Messages handed to the client."""
    delivered: int
    """Acknowledged by the broker."""
    failed: int
    """Reported as failed (refused by the broker, or given up on after the delivery timeout)."""
    stalled_s: float
    """Seconds messages have been waiting with no acknowledgement at all (0 when none waits)."""

    @property
    def pending(self) -> int:
        """Handed over, no delivery report yet."""
        return self.sent - self.delivered - self.failed


class DeliveryCounts:
    """Per-topic delivery counts, kept by the client's callbacks on whichever thread runs them."""

    def __init__(self) -> None:
        self._settled = threading.Condition()
        self._counts: dict[str, list[int]] = {}  # topic → [sent, delivered, failed]
        self._progress_at = time.monotonic()
        """When messages last started waiting (none pending before) or one was acknowledged."""

    def _add(self, topic: str, column: int) -> None:
        now = time.monotonic()
        with self._settled:
            if column == 1 or (column == 0 and not self._pending()):
                self._progress_at = now
            self._counts.setdefault(topic, [0, 0, 0])[column] += 1
            if column and not self._pending():
                self._settled.notify_all()

    def _pending(self) -> int:
        return sum(sent - done - failed for sent, done, failed in self._counts.values())

    def sent(self, topic: str) -> None:
        """One message handed to the client."""
        self._add(topic, 0)

    def delivered(self, topic: str) -> None:
        """One message acknowledged by the broker."""
        self._add(topic, 1)

    def failed(self, topic: str) -> None:
        """One message reported as failed."""
        self._add(topic, 2)

    def settle(self, timeout_s: float) -> int:
        """Wait up to ``timeout_s`` until every message has its report; how many still wait."""
        with self._settled:
            self._settled.wait_for(lambda: not self._pending(), timeout_s)
            return self._pending()

    def of(self, topic: str | None = None) -> Deliveries:
        """The counts for one topic, or for all of them."""
        with self._settled:
            rows = list(self._counts.values()) if topic is None else [self._counts.get(topic)]
            sent, delivered, failed = (sum(r[i] for r in rows if r) for i in range(3))
            waiting = self._pending() > 0
            stalled = time.monotonic() - self._progress_at if waiting else 0.0
        return Deliveries(sent, delivered, failed, stalled)


class ProducerBackend(Protocol):
    """What the simulator, the dead-letter writer and the alert publisher need from a producer."""

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None: ...
    def poll(self, timeout_s: float) -> None: ...
    def flush(self, timeout_s: float = 30.0) -> None: ...
    def close(self, timeout_s: float = 10.0) -> None: ...
    def deliveries(self, topic: str | None = None) -> Deliveries: ...


@dataclass
class ConsumerOptions:
    """Consumer settings shared by the backends."""

    topic: str
    group_id: str | None = "workbench"
    """Consumer group; None reads without a group (explicit partitions, nothing committed)."""
    partitions: Sequence[int] | None = None
    """Explicit partitions instead of group-managed assignment."""
    start: str = "earliest"
    """Where a group with no committed offset starts: 'earliest' or 'latest'."""
    client_id: str = "workbench"
    on_assign: Callable[[list[int]], dict[int, int]] | None = None
    """Called inside a poll when the group hands this consumer partitions (state is restored
    then); it returns partition → offset for those that resume from a checkpoint of their own."""
    on_revoke: Callable[[list[int]], None] | None = None
    """Called inside a poll before the group takes partitions away (what was handled of them is
    checkpointed and committed then)."""

    def __post_init__(self) -> None:
        if self.start not in ("earliest", "latest"):
            raise ValueError(f"start={self.start!r}: choose 'earliest' or 'latest'")


def kafka_python_consumer_config(settings: Settings, options: ConsumerOptions) -> dict[str, Any]:
    """kafka-python ``KafkaConsumer`` keyword arguments for these options."""
    return {
        "bootstrap_servers": settings.bootstrap,
        "group_id": options.group_id,
        "client_id": options.client_id,
        "enable_auto_commit": False,
        "auto_offset_reset": options.start,
        "fetch_max_wait_ms": FETCH_WAIT_MS,
        "fetch_min_bytes": FETCH_MIN_BYTES,
        "max_partition_fetch_bytes": 4 * 1024 * 1024,
        "reconnect_backoff_max_ms": 2000,
        "session_timeout_ms": SESSION_TIMEOUT_MS,
        "heartbeat_interval_ms": SESSION_TIMEOUT_MS // 3,
        # A group assigned before a topic's metadata reached this client gets no partitions
        # until the metadata is refreshed: do that every 10 s, not every 5 minutes.
        "metadata_max_age_ms": 10_000,
        **settings.kafka_python_security(),
    }


def confluent_consumer_config(settings: Settings, options: ConsumerOptions) -> dict[str, Any]:
    """librdkafka consumer configuration for these options."""
    return {
        **_librdkafka_config(settings),
        "group.id": options.group_id or f"workbench-nogroup-{time.time_ns()}",
        "client.id": options.client_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": options.start,
        "fetch.wait.max.ms": FETCH_WAIT_MS,
        "fetch.min.bytes": FETCH_MIN_BYTES,
        # librdkafka's default (1000 ms) pauses fetching whenever processing falls behind.
        "fetch.queue.backoff.ms": 10,
        "reconnect.backoff.max.ms": 2000,
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": SESSION_TIMEOUT_MS // 3,
        "enable.partition.eof": False,
    }


class KafkaPythonConsumer:
    """Consumer backend on kafka-python (pure Python; fast once the ``crc32c`` package is in)."""

    def __init__(self, settings: Settings, options: ConsumerOptions) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._tp = TopicPartition
        self._topic = options.topic
        self._consumer = KafkaConsumer(**kafka_python_consumer_config(settings, options))
        if options.partitions is not None:
            self._consumer.assign([TopicPartition(options.topic, p) for p in options.partitions])
        else:
            # Fetch the topic's metadata before the first poll joins the group: a group leader
            # without it assigns nobody any partition of the topic.
            self._consumer.partitions_for_topic(options.topic)
            self._consumer.subscribe([options.topic], listener=self._listener(options))

    def _listener(self, options: ConsumerOptions) -> Any:
        from kafka import ConsumerRebalanceListener

        consumer, tp, topic = self._consumer, self._tp, options.topic

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                if options.on_revoke is not None and revoked:
                    options.on_revoke(sorted(t.partition for t in revoked))

            def on_partitions_assigned(self, assigned: Any) -> None:
                if options.on_assign is not None and assigned:
                    resume = options.on_assign(sorted(t.partition for t in assigned))
                    for partition, offset in resume.items():
                        consumer.seek(tp(topic, partition), offset)

        return Listener()

    def poll(self, max_records: int, timeout_s: float) -> RecordBatch | None:
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        if not polled:
            return None
        values: list[bytes | None] = []
        keys: list[bytes | None] = []
        stamps: list[int] = []
        runs: list[tuple[int, int]] = []
        records_of: dict[int, list] = {}
        next_offsets: dict[int, int] = {}
        for tp, records in polled.items():
            runs.append((tp.partition, len(values)))
            records_of[tp.partition] = records
            values.extend([r.value for r in records])
            keys.extend([r.key for r in records])
            stamps.extend([r.timestamp for r in records])
            next_offsets[tp.partition] = records[-1].offset + 1

        def locate(i: int) -> tuple[int, int]:
            for partition, start in reversed(runs):
                if i >= start:
                    return partition, records_of[partition][i - start].offset
            raise IndexError(i)

        return RecordBatch(self._topic, values, keys, stamps, next_offsets, runs, locate)

    def commit(self, offsets: dict[int, int]) -> None:
        from kafka.structs import OffsetAndMetadata

        self._consumer.commit(
            {self._tp(self._topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()}
        )

    def lag(self) -> dict[int, int] | None:
        behind = {}
        for tp in self._consumer.assignment():
            high = self._consumer.highwater(tp)
            if high is None:
                return None
            behind[tp.partition] = max(0, high - self._consumer.position(tp))
        return behind

    def close(self) -> None:
        self._consumer.close(autocommit=False)


def confluent_take(consumer: Any, max_records: int, timeout_s: float) -> list[Any]:
    """Up to ``max_records`` messages from a confluent-kafka consumer, waiting at most
    ``timeout_s`` for the first.

    ``consume()`` waits out its whole timeout unless ``max_records`` arrive: take what is queued,
    and only when nothing is, block for the first message (so a trickle is not held back).
    """
    messages = consumer.consume(num_messages=max_records, timeout=0)
    if messages:
        return messages
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(num_messages=max_records - 1, timeout=0)]


def _librdkafka_config(settings: Settings) -> dict[str, object]:
    return {"bootstrap.servers": settings.bootstrap, **settings.security}


class ConfluentConsumer:
    """Consumer backend on confluent-kafka (librdkafka): the fast path."""

    def __init__(self, settings: Settings, options: ConsumerOptions) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._tp = TopicPartition
        self._topic = options.topic
        self._consumer = Consumer(confluent_consumer_config(settings, options), logger=log)
        if options.partitions is not None:
            self._consumer.assign([TopicPartition(options.topic, p) for p in options.partitions])
        else:
            self._consumer.subscribe(
                [options.topic], on_assign=self._assigned(options), on_revoke=self._revoked(options)
            )
        self._positions: dict[int, int] = {}

    def _assigned(self, options: ConsumerOptions) -> Callable[[Any, list], None]:
        def on_assign(consumer: Any, partitions: list) -> None:
            if options.on_assign is not None and partitions:
                resume = options.on_assign(sorted(p.partition for p in partitions))
                for p in partitions:
                    if p.partition in resume:
                        p.offset = resume[p.partition]
            consumer.assign(partitions)

        return on_assign

    def _revoked(self, options: ConsumerOptions) -> Callable[[Any, list], None]:
        def on_revoke(consumer: Any, partitions: list) -> None:
            for p in partitions:
                self._positions.pop(p.partition, None)
            if options.on_revoke is not None and partitions:
                options.on_revoke(sorted(p.partition for p in partitions))
            consumer.unassign()

        return on_revoke

    def poll(self, max_records: int, timeout_s: float) -> RecordBatch | None:
        messages = confluent_take(self._consumer, max_records, timeout_s)
        if not messages:
            return None
        values: list[bytes | None] = []
        keys: list[bytes | None] = []
        stamps: list[int] = []
        kept = []
        runs: list[tuple[int, int]] = []
        next_offsets: dict[int, int] = {}
        previous = -1
        for m in messages:
            if m.error() is not None:
                log.warning("Kafka consumer error: %s", m.error())
                continue
            partition = m.partition()
            if partition != previous:
                runs.append((partition, len(values)))
                previous = partition
            kept.append(m)
            values.append(m.value())
            keys.append(m.key())
            stamps.append(m.timestamp()[1])
            next_offsets[partition] = m.offset() + 1
        if not kept:
            return None
        self._positions.update(next_offsets)

        def locate(i: int) -> tuple[int, int]:
            return kept[i].partition(), kept[i].offset()

        return RecordBatch(self._topic, values, keys, stamps, next_offsets, runs, locate)

    def commit(self, offsets: dict[int, int]) -> None:
        self._consumer.commit(
            offsets=[self._tp(self._topic, p, o) for p, o in offsets.items()], asynchronous=False
        )

    def lag(self) -> dict[int, int] | None:
        behind = {}
        for tp in self._consumer.assignment():
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            position = self._positions.get(tp.partition)
            if high < 0 or position is None:
                continue
            behind[tp.partition] = max(0, high - position)
        return behind

    def close(self) -> None:
        self._consumer.close()


class KafkaPythonProducer:
    """Producer backend on kafka-python; its delivery reports arrive on the client's own thread."""

    def __init__(self, settings: Settings, client_id: str = "workbench") -> None:
        from kafka import KafkaProducer

        self._counts = DeliveryCounts()
        self._producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap,
            client_id=client_id,
            acks="all",
            linger_ms=5,
            batch_size=256 * 1024,
            retries=2**31 - 1,
            reconnect_backoff_max_ms=2000,
            **settings.kafka_python_security(),
        )

    def _on_success(self, topic: str, _metadata: object) -> None:
        self._counts.delivered(topic)

    def _on_error(self, topic: str, exc: BaseException) -> None:
        self._counts.failed(topic)
        log.error("Kafka delivery failed: %s", exc)

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        future = self._producer.send(
            topic, value=value, key=key, headers=list(headers or ()), partition=partition
        )
        self._counts.sent(topic)
        future.add_callback(self._on_success, topic)
        future.add_errback(self._on_error, topic)

    def poll(self, timeout_s: float) -> None:
        """Reports need no serving here: just wait."""
        time.sleep(timeout_s)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every message has its delivery report; TimeoutError after ``timeout_s``."""
        remaining = self._counts.settle(timeout_s)  # batches go out by themselves (5 ms linger)
        if remaining:
            raise TimeoutError(f"{remaining} messages still undelivered after {timeout_s:.0f} s")

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush for up to ``timeout_s``, then let go of the client and whatever is undelivered."""
        from kafka.errors import KafkaTimeoutError

        self._counts.settle(timeout_s)
        with contextlib.suppress(KafkaTimeoutError):  # undelivered left: its threads are daemons
            self._producer.close(timeout=0)

    def deliveries(self, topic: str | None = None) -> Deliveries:
        """Delivery counts for one topic or all."""
        return self._counts.of(topic)


class ConfluentProducer:
    """Producer backend on confluent-kafka (librdkafka); reports are served by poll and flush."""

    def __init__(self, settings: Settings, client_id: str = "workbench") -> None:
        from confluent_kafka import Producer

        self._counts = DeliveryCounts()
        self._producer = Producer(
            {
                **_librdkafka_config(settings),
                "client.id": client_id,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "queue.buffering.max.messages": 1_000_000,
                "reconnect.backoff.max.ms": 2000,
            },
            logger=log,
        )

    def _on_delivery(self, err: object, msg: Any) -> None:
        if err is None:
            self._counts.delivered(msg.topic())
        else:
            self._counts.failed(msg.topic())
            log.error("Kafka delivery failed: %s", err)

    def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Sequence[tuple[str, bytes]] | None = None,
        partition: int | None = None,
    ) -> None:
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=headers,
                    on_delivery=self._on_delivery,
                    **where,
                )
                break
            except BufferError:  # local queue full: let librdkafka drain it
                self._producer.poll(0.05)
        self._counts.sent(topic)
        self._producer.poll(0)

    def poll(self, timeout_s: float) -> None:
        """Serve delivery reports for up to ``timeout_s``."""
        self._producer.poll(timeout_s)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every message has its delivery report; TimeoutError after ``timeout_s``."""
        remaining = self._producer.flush(timeout_s)
        if remaining:
            raise TimeoutError(f"{remaining} messages still undelivered after {timeout_s:.0f} s")

    def close(self, timeout_s: float = 10.0) -> None:
        """Flush for up to ``timeout_s``; librdkafka drops what is left when the object goes."""
        self._producer.flush(timeout_s)

    def deliveries(self, topic: str | None = None) -> Deliveries:
        """Delivery counts for one topic or all."""
        return self._counts.of(topic)


Messages = Iterable[tuple[bytes | None, bytes, Sequence[tuple[str, bytes]] | None]]
"""(key, value, headers) of each message."""


def deliver(
    producer: ProducerBackend, topic: str, messages: Messages, partition: int | None = None
) -> int:
    """Send (key, value, headers) messages (to ``partition``, or by key) and wait until the
    broker has them all.

    Used before committing offsets: raises if the broker refused any, so nothing is lost.
    """
    return deliver_many(producer, [(topic, partition, messages)])


def deliver_many(
    producer: ProducerBackend, groups: Iterable[tuple[str, int | None, Messages]]
) -> int:
    """``deliver`` for several (topic, partition or None, messages) groups with one wait."""
    failed_before: dict[str, int] = {}
    n = 0
    for topic, partition, messages in groups:
        if topic not in failed_before:
            failed_before[topic] = producer.deliveries(topic).failed
        where = {} if partition is None else {"partition": partition}
        for key, value, headers in messages:
            producer.send(topic, value, key=key, headers=headers, **where)
            n += 1
    if n:
        producer.flush()
        for topic, before in failed_before.items():
            refused = producer.deliveries(topic).failed - before
            if refused:
                raise RuntimeError(f"the broker refused {refused} of {n} messages to {topic}")
    return n


def make_consumer(settings: Settings, options: ConsumerOptions) -> ConsumerBackend:
    """A consumer on the configured backend."""
    if settings.backend == "confluent":
        return ConfluentConsumer(settings, options)
    return KafkaPythonConsumer(settings, options)


def make_producer(settings: Settings, client_id: str = "workbench") -> ProducerBackend:
    """A producer on the configured backend."""
    if settings.backend == "confluent":
        return ConfluentProducer(settings, client_id)
    return KafkaPythonProducer(settings, client_id)
