"""Waiting on the kernel's loop for a live source's first readings: *Run All* reaches the cells
after a live view a moment after it started, before the stream has had time to arrive."""

from __future__ import annotations

import asyncio
import time

from workbench.streams.source import from_kafka_readings

POLL_S = 0.1


async def first_readings(source: from_kafka_readings, timeout_s: float) -> int:
    """Wait until ``source`` has handled a reading, at most ``timeout_s``; how many it has."""
    deadline = time.monotonic() + timeout_s
    while source.metrics.total == 0 and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
    return source.metrics.total
