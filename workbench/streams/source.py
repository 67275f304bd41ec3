"""A Streamz source of validated reading batches from Kafka, at-least-once.

The consumer lives on one dedicated thread (Kafka clients are not thread-safe) and is polled from a
coroutine on the caller's event loop, so a Jupyter or Voilà kernel is never blocked. Each poll is
decoded and validated on that thread; malformed records go to the dead-letter topic; the batch is
emitted downstream and awaited (that await is the back-pressure); only then are its offsets
committed. Broker outages are ridden out: failed steps are retried with back-off, never skipped.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any, Protocol, TypeVar

from streamz import Source, Stream
from tornado.ioloop import IOLoop

from workbench.config import TOPIC_DEADLETTER, TOPIC_READINGS, Settings
from workbench.streams.clients import (
    FETCH_WAIT_MS,
    ConsumerBackend,
    ConsumerOptions,
    RecordBatch,
    make_consumer,
    make_producer,
)
from workbench.streams.deadletter import CountOnlyDeadLetters, DeadLetterWriter
from workbench.streams.metrics import PipelineMetrics
from workbench.streams.validate import ReadingBatch, ReadingValidator, reject_all

FINAL_COMMIT_S = 10.0
"""How long a stopping source keeps trying to commit what it handled (s)."""
log = logging.getLogger(__name__)
T = TypeVar("T")
DeadLetters = DeadLetterWriter | CountOnlyDeadLetters

MAX_BACKOFF_S = 5.0
MAX_BATCH = 50_000
"""Most records per poll and batch. A backlog is read in batches this large because detection
pays a fixed cost per *round* (each device's k-th reading of a batch): a 10,000-record poll is
mostly one partition's, every device in it some six times over, so its rounds are small. At
50,000 a round holds each device of several partitions (measured in-process, 10,000 devices:
40k → 54k readings/s). A live stream's batches are what one held fetch brings, far fewer."""


class PartitionOwner(Protocol):
    """State kept per partition beside the offsets (a worker's checkpointer); called on the
    consumer's thread."""

    def checkpoint(self, offsets: dict[int, int]) -> None:
        """Make the state up to these offsets durable; they are committed right after."""

    def assigned(self, partitions: list[int]) -> dict[int, int]:
        """The group now gives us ``partitions``; where to resume those with state of their own."""

    def data_time(self, partition: int) -> datetime | None:
        """The data time a partition's state has reached (None: no state of its own)."""

    def revoked(self, partitions: list[int]) -> None:
        """The group takes ``partitions`` away (what was handled of them is committed already)."""


def _running_loop_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Bind to the caller's running event loop (a kernel's) unless a loop was given explicitly.

    Without this, streamz moves an asynchronous source to its private loop thread and every sink,
    widget updates included, would run off the kernel's main thread.
    """
    if "loop" in kwargs:
        return kwargs
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return kwargs
    return {"loop": IOLoop.current(), "asynchronous": True, **kwargs}


@Stream.register_api(staticmethod)
class from_kafka_readings(Source):
    """Emit ``ReadingBatch``es from a Kafka topic; commit offsets once downstream handled them.

    Parameters
    ----------
    settings: cluster, client backend (kafka-python or confluent) and security; default from env.
    topic: the readings topic.
    group_id: consumer group (viewers that must each see everything need their own group).
    partitions: explicit partitions instead of group-managed assignment.
    start: where a group with no committed offsets begins, 'earliest' or 'latest'.
    deadletter_topic: where rejected records go; None when another pipeline owns that topic
        (a dashboard viewer's): they are then only counted.
    max_batch: most records per poll and per emitted batch.
    poll_timeout_s: longest one poll waits (default: as long as the broker holds a fetch).
    commit_interval_s: commit processed offsets at most this often (and always on stop).
    owner: state kept beside the offsets: checkpointed before every commit, restored when the
        group hands a partition over (``workbench.streams.checkpoint``).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        topic: str = TOPIC_READINGS,
        group_id: str | None = "workbench",
        partitions: list[int] | None = None,
        start: str = "earliest",
        max_batch: int = MAX_BATCH,
        poll_timeout_s: float = FETCH_WAIT_MS / 1000,
        commit_interval_s: float = 1.0,
        validator: ReadingValidator | None = None,
        deadletter_topic: str | None = TOPIC_DEADLETTER,
        owner: PartitionOwner | None = None,
        **kwargs: Any,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch={max_batch}: it must be at least 1")
        if poll_timeout_s <= 0 or commit_interval_s < 0:
            raise ValueError("poll_timeout_s must be > 0 s and commit_interval_s ≥ 0 s")
        self.settings = settings or Settings.from_env()
        self.options = ConsumerOptions(
            topic=topic, group_id=group_id, partitions=partitions, start=start
        )
        self.max_batch = max_batch
        self.poll_timeout_s = poll_timeout_s
        self.commit_interval_s = commit_interval_s
        self.validator = validator or ReadingValidator()
        self.deadletter_topic = deadletter_topic
        self.owner = owner
        self.metrics = PipelineMetrics()
        self._pending: dict[int, int] = {}
        self._partition_latest: dict[int, datetime] = {}
        self._last_commit = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self.finished = threading.Event()
        """Set once the source has committed, closed its clients and stopped."""
        super().__init__(**_running_loop_kwargs(kwargs))

    def start(self) -> None:
        """Start consuming; on a running event loop, only on the one this source emits on."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None and running is not self.loop.asyncio_loop:
            raise RuntimeError(
                "this Kafka source was made off the running event loop, so its batches would be "
                "handled on another thread: make it on the loop that starts it (or pass loop=)"
            )
        super().start()

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        assert self._executor is not None
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _retry(self, what: str, fn: Callable[..., T], *args: Any) -> T | None:
        """Run ``fn`` on the consumer thread until it succeeds; None if stopped first."""
        backoff = 0.1
        while True:
            try:
                return await self._in_thread(fn, *args)
            except Exception as exc:
                self.metrics.record_error(exc)
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, backoff)
                if self.stopped:
                    return None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _open(self) -> tuple[ConsumerBackend, DeadLetters]:
        options = self.options
        if self.owner is not None and options.group_id is not None:
            held: list[ConsumerBackend] = []
            options = replace(
                options,
                on_assign=self._assigned,
                on_revoke=lambda partitions: self._revoked(held[0], partitions),
            )
            consumer = make_consumer(self.settings, options)
            held.append(consumer)
        else:
            consumer = make_consumer(self.settings, options)
        if self.deadletter_topic is None:
            return consumer, CountOnlyDeadLetters()
        producer = make_producer(self.settings, client_id="workbench-deadletter")
        return consumer, DeadLetterWriter(producer, self.deadletter_topic)

    def _fetch(self, consumer: ConsumerBackend) -> tuple[RecordBatch | None, ReadingBatch | None]:
        raw = consumer.poll(self.max_batch, self.poll_timeout_s)
        # Once poll() has returned records the consumer's position is past them: nothing after
        # it may raise, or the retry would poll again and skip them for good. Lag is only a
        # figure, and during a broker outage it is unknown.
        try:
            self.metrics.partition_lag = consumer.lag()
        except Exception as exc:
            log.debug("consumer lag unknown: %s", exc)
            self.metrics.partition_lag = None
        if raw is None:
            return None, None
        return raw, self.validator(raw)

    async def run(self) -> None:
        """Poll, validate, dead-letter, emit, commit — until stopped."""
        self.finished.clear()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="workbench-kafka-source")
        opened = None
        try:
            opened = await self._retry("connecting to Kafka", self._open)
            if opened is not None:
                await self._consume(*opened)
        except Exception as exc:  # a bug, not a fault: say so instead of dying silently
            log.exception("Kafka source stopped by an unexpected error")
            self.metrics.record_error(exc, status="failed")
        finally:
            if opened is not None:
                await self._close(*opened)
            self._executor.shutdown(wait=False)
            self.stopped = True
            if self.metrics.status != "failed":
                self.metrics.status = "stopped"
            self.finished.set()

    async def _consume(self, consumer: ConsumerBackend, deadletters: DeadLetters) -> None:
        self.metrics.status = "consuming"
        while not self.stopped:
            fetched = await self._retry("polling Kafka", self._fetch, consumer)
            if fetched is None:
                break
            raw, batch = fetched
            self.metrics.status = "consuming"  # a poll got through, with or without records
            if (
                raw is not None
                and batch is not None
                and not await self._handle(raw, batch, deadletters)
            ):
                break
            if self._pending and time.monotonic() - self._last_commit >= self.commit_interval_s:
                await self._commit(consumer)
        await self._commit_before_closing(consumer)

    async def _commit_before_closing(self, consumer: ConsumerBackend) -> None:
        """Commit what was handled, retrying for up to FINAL_COMMIT_S: a stop that lands while
        the group rebalances must still commit, or the next consumer repeats those readings."""
        deadline = time.monotonic() + FINAL_COMMIT_S
        while self._pending:
            await self._commit(consumer)
            if not self._pending or time.monotonic() > deadline:
                return
            # A poll lets the group protocol finish the rebalance; what it fetches is not
            # handled, so it is not committed and the next consumer reads it.
            await self._in_thread(consumer.poll, 1, 0.1)

    async def _handle(
        self, raw: RecordBatch, batch: ReadingBatch, deadletters: DeadLetters
    ) -> bool:
        """Dead-letter, emit, mark offsets for commit. False when stopped before it was done."""
        if (
            batch.rejected
            and await self._retry("writing dead letters", deadletters.publish, batch.rejected)
            is None
        ):
            return False
        handled = len(batch)
        dead = len(batch.rejected)
        batch.watermark = self._advance_watermark(batch.partition_latest)
        if batch.readings:
            try:
                await asyncio.gather(*self._emit(batch))
            except Exception as exc:
                log.exception("the pipeline failed on a batch; its readings go to the dead letters")
                self.metrics.record_error(exc, status="consuming")
                reason = f"pipeline error: {type(exc).__name__}: {exc}"
                failed = _failed_readings(raw, batch, reason)
                if await self._retry("writing dead letters", deadletters.publish, failed) is None:
                    return False
                handled, dead = 0, dead + len(failed)
        if self.options.group_id is not None:  # without a group there is nothing to commit to
            self._pending.update(raw.next_offsets)
        self.metrics.record_batch(handled, dead, batch.timestamps_ms, time.time())
        return True

    def _advance_watermark(self, partition_latest: dict[int, datetime]) -> datetime | None:
        """The data time every partition seen so far has reached (the slowest one's latest)."""
        for partition, ts in partition_latest.items():
            seen = self._partition_latest.get(partition)
            if seen is None or ts > seen:
                self._partition_latest[partition] = ts
        return min(self._partition_latest.values(), default=None)

    def _commit_now(self, consumer: ConsumerBackend, offsets: dict[int, int]) -> None:
        """On the consumer thread: the owner's state first, then the offsets."""
        if self.owner is not None:
            self.owner.checkpoint(offsets)
        consumer.commit(offsets)

    def _assigned(self, partitions: list[int]) -> dict[int, int]:
        """In a poll, when the group hands us ``partitions``: the owner restores their state, and
        a partition resumed from state holds the watermark at that state's data time until its
        backlog is read (or its devices would look silent meanwhile)."""
        assert self.owner is not None
        try:
            resume = self.owner.assigned(partitions)
        except Exception as exc:  # the partitions start cold, from their committed offsets
            self.metrics.record_error(exc, status="consuming")
            log.exception("restoring the state of partitions %s failed", partitions)
            return {}
        for partition in resume:
            at = self.owner.data_time(partition)
            if at is not None and partition not in self._partition_latest:
                self._partition_latest[partition] = at
        return resume

    def _revoked(self, consumer: ConsumerBackend, partitions: list[int]) -> None:
        """In a poll, before the group takes ``partitions``: commit what was handled of them, so
        their next owner starts exactly there; their times no longer hold the watermark back."""
        offsets = {p: o for p, o in self._pending.items() if p in partitions}
        if offsets:
            try:
                self._commit_now(consumer, offsets)
            except Exception as exc:  # the next owner resumes from the last checkpoint instead
                self.metrics.record_error(exc, status="consuming")
                log.warning("committing revoked partitions failed: %s", exc)
        for partition in partitions:
            self._pending.pop(partition, None)
            self._partition_latest.pop(partition, None)
        if self.owner is not None:
            self.owner.revoked(partitions)

    async def _commit(self, consumer: ConsumerBackend) -> None:
        offsets = dict(self._pending)
        try:
            await self._in_thread(self._commit_now, consumer, offsets)
        except Exception as exc:
            # The consumer is still fetching: a commit refused during a rebalance is counted as an
            # error and retried, but the pipeline is not reconnecting.
            self.metrics.record_error(exc, status="consuming")
            if type(exc).__name__ == "CommitFailedError":  # group rebalanced: partitions moved on
                self._pending.clear()
            log.warning("commit failed (%s); will retry", exc)
            return
        for partition, offset in offsets.items():
            if self._pending.get(partition) == offset:
                del self._pending[partition]
        self._last_commit = time.monotonic()

    async def _close(self, consumer: ConsumerBackend, deadletters: DeadLetters) -> None:
        for close in (consumer.close, deadletters.close):
            try:
                await self._in_thread(close)
            except Exception as exc:
                log.warning("closing a Kafka client failed: %s", exc)

    async def wait_stopped(self) -> None:
        """Wait (without blocking the loop) until the source has committed, closed and finished."""
        while self.started and not self.finished.is_set():
            await asyncio.sleep(0.02)


def _failed_readings(raw: RecordBatch, batch: ReadingBatch, reason: str) -> list:
    """The valid records of a batch (the invalid ones were already dead-lettered), as rejects."""
    already = {(r.partition, r.offset) for r in batch.rejected}
    return [r for r in reject_all(raw, reason) if (r.partition, r.offset) not in already]
