"""Read the latest records of a topic, bounded: what is there now, never a wait for what comes.

Notebooks use it to peek at a topic and to record a window of readings for replay.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from workbench.config import Settings
from workbench.schema import Reading
from workbench.streams.clients import RecordBatch
from workbench.streams.records import Record, read_partitions
from workbench.streams.validate import ReadingValidator, Rejected


def read_recent(
    settings: Settings,
    topic: str,
    limit: int,
    since: datetime | None = None,
    timeout_s: float = 60.0,
) -> list[Record]:
    """The latest ``limit`` records of ``topic`` (produced at or after ``since``), oldest first."""
    if limit < 1:
        raise ValueError(f"limit={limit}: it must be at least 1 record")

    def starts(consumer: Any, tps: list[Any], ends: dict[Any, int]) -> dict[Any, int]:
        begins = consumer.beginning_offsets(tps)
        first = {tp: max(begins[tp], ends[tp] - limit) for tp in tps}
        if since is not None:
            found = consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
            for tp, at in found.items():
                first[tp] = max(first[tp], ends[tp] if at is None else at.offset)
        return first

    records = read_partitions(settings, topic, starts=starts, timeout_s=timeout_s)
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
