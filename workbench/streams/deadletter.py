"""Publish rejected records to the dead-letter topic: original bytes, where they came from, why.

The original key and value are kept byte for byte; provenance and reason travel in headers (the
convention of Kafka Connect's dead-letter queues), so a fixed consumer can replay them unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from workbench.config import TOPIC_DEADLETTER
from workbench.streams.clients import ProducerBackend, deliver
from workbench.streams.validate import Rejected

HEADER_REASON = "workbench.reason"
HEADER_TOPIC = "workbench.source.topic"
HEADER_PARTITION = "workbench.source.partition"
HEADER_OFFSET = "workbench.source.offset"
HEADER_REJECTED_AT = "workbench.rejected_at_ms"


def deadletter_headers(r: Rejected) -> list[tuple[str, bytes]]:
    """The headers that describe one rejected record."""
    return [
        (HEADER_REASON, r.reason.encode()),
        (HEADER_TOPIC, r.topic.encode()),
        (HEADER_PARTITION, str(r.partition).encode()),
        (HEADER_OFFSET, str(r.offset).encode()),
        (HEADER_REJECTED_AT, str(time.time_ns() // 1_000_000).encode()),
    ]


class DeadLetterWriter:
    """Writes rejected records and waits until the broker has them (before offsets commit)."""

    def __init__(self, producer: ProducerBackend, topic: str = TOPIC_DEADLETTER) -> None:
        self.producer = producer
        self.topic = topic

    def publish(self, rejected: Iterable[Rejected]) -> int:
        """Send and flush; returns how many were written. Raises if the broker did not take them."""
        return deliver(
            self.producer,
            self.topic,
            ((r.key, r.value or b"", deadletter_headers(r)) for r in rejected),
        )

    def close(self) -> None:
        self.producer.close()


class CountOnlyDeadLetters:
    """Stands in for the writer in a pipeline that does not own the dead-letter topic (a
    dashboard viewer's): rejects are counted by the source but not written again."""

    def publish(self, rejected: Iterable[Rejected]) -> int:
        return sum(1 for _ in rejected)

    def close(self) -> None:
        pass
