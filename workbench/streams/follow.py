"""Follow a topic: each poll's records handed to a coroutine on the caller's event loop.

Views follow the workers' output topics with it (alert states, device statuses, figures,
settings). The consumer lives on a thread of its own; the handler runs on the loop and is
awaited, and with a consumer group the offsets are committed only after it returned, so a view
that stores what it reads (the API's alert store) loses nothing when it restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from workbench.config import Settings
from workbench.streams.follow_clients import (
    MAX_RECORDS,
    FollowConsumer,
    NoTopicYet,
    open_follow_consumer,
)
from workbench.streams.records import Record

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 5.0
Handler = Callable[[list[Record]], Awaitable[None]]
T = TypeVar("T")


def decode_each(records: list[Record], decode: Callable[[bytes], T]) -> list[T]:
    """Each record's value decoded; an empty or malformed one is skipped and logged, so one bad
    record never stops a view."""
    out = []
    for r in records:
        if not r.value:
            continue
        try:
            out.append(decode(r.value))
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            log.warning("skipping a malformed record (partition %d, offset %d): %s",
                        r.partition, r.offset, exc)  # fmt: skip
    return out


def _count(polled: list[Record] | dict[str, list[Record]]) -> int:
    return len(polled) if isinstance(polled, list) else sum(map(len, polled.values()))


class TopicFollower:
    """Poll ``topic`` from ``start`` ('earliest' or 'latest') until stopped."""

    def __init__(
        self,
        settings: Settings,
        topic: str,
        handle: Handler,
        group_id: str | None = None,
        start: str = "earliest",
        poll_s: float = 0.5,
        partitions: list[int] | None = None,
        since: datetime | None = None,
        every_s: float = 0.0,
    ) -> None:
        """``poll_s``: longest a poll (and the broker's fetch) waits while nothing new comes.
        ``partitions``: read only these (no group), from the first record produced at or
        after ``since`` (else from ``start``). ``every_s``: hand records over at most this often
        while they trickle in; meanwhile they gather in the client and come as one batch (a view
        that redraws every tick gains nothing from more, and each hand-over costs the loop), and
        the broker gathers them too, holding fetches up to ``poll_s``."""
        if start not in ("earliest", "latest"):
            raise ValueError(f"start={start!r}: choose 'earliest' or 'latest'")
        if partitions is not None and group_id is not None:
            raise ValueError("read chosen partitions without a group, or a group's share")
        self.settings = settings
        self.topic = topic
        self.handle = handle
        self.group_id = group_id
        self.start_at = start
        self.poll_s = poll_s
        self.partitions = partitions
        self.since = since
        self.every_s = every_s
        self.records = 0
        """Records handled so far."""
        self.errors = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"workbench-follow-{topic}")
        self._task: asyncio.Task | None = None
        self._consumer: FollowConsumer | None = None
        self._waiting = False

    def start(self) -> None:
        """Begin following (on the running loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop after the poll in hand; the consumer is closed."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._consumer is not None:
            await self._in_thread(self._consumer.close)
            self._consumer = None
        self._thread.shutdown(wait=False)

    async def _in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _open(self) -> FollowConsumer:
        return open_follow_consumer(
            self.settings,
            {self.topic: self.start_at},
            group_id=self.group_id,
            partitions=self.partitions,
            since=self.since,
            wait_s=self.poll_s,
            gather=self.every_s > 0,
        )

    def _poll(self) -> list[Record]:
        return [r for records in self._consumer.poll(self.poll_s).values() for r in records]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            records = await self._retry("polling", self._polled)
            if records:
                count = _count(records)
                # Polled records are past the consumer's position: hand them over until the
                # handler takes them, never skip them.
                await self._retry("handling records", self.handle, records)
                self.records += count
                if self.group_id is not None:
                    await self._retry("committing", self._in_thread, self._consumer.commit)
                rest = self.every_s - (loop.time() - began)
                if rest > 0 and count < MAX_RECORDS:  # catching up goes at full speed
                    await asyncio.sleep(rest)

    async def _polled(self) -> list[Record]:
        if self._consumer is None:
            self._consumer = await self._in_thread(self._open)
        return await self._in_thread(self._poll)

    async def _retry(self, what: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        backoff = 0.1
        while True:
            try:
                return await fn(*args)
            except asyncio.CancelledError:
                raise
            except NoTopicYet as exc:  # not an error: wait for it, saying so once
                if not self._waiting:
                    log.info("%s: waiting for the topic to be made", exc)
                self._waiting = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception as exc:  # an outage or a failing handler: say so, try again
                self.errors += 1
                log.warning("%s %s failed (%s); retrying in %.1f s", what, self.topic, exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)


class TopicsFollower(TopicFollower):
    """Several whole topics on one consumer (one connection and one network thread for all),
    each from its own start and with its own handler: a view's outputs, followed cheaply."""

    def __init__(
        self,
        settings: Settings,
        follows: dict[str, tuple[Handler, str]],
        poll_s: float = 0.5,
        every_s: float = 0.0,
        optional: frozenset[str] = frozenset(),
    ) -> None:
        """``follows``: topic → (its handler, 'earliest' or 'latest'); ``every_s`` as for
        ``TopicFollower``. ``optional``: topics the others need not wait for (a fleet with no
        simulator has no truth topic); each is read once it is made."""
        for topic, (_handle, start) in follows.items():
            if start not in ("earliest", "latest"):
                raise ValueError(f"{topic}: start={start!r}: choose 'earliest' or 'latest'")
        super().__init__(
            settings, "+".join(follows), self._dispatch, poll_s=poll_s, every_s=every_s
        )
        self.follows = follows
        self.optional = optional

    def _open(self) -> FollowConsumer:
        return open_follow_consumer(
            self.settings,
            {t: start for t, (_handle, start) in self.follows.items()},
            wait_s=self.poll_s,
            gather=self.every_s > 0,
            optional=self.optional,
        )

    def _poll(self) -> dict[str, list[Record]]:  # type: ignore[override]
        return self._consumer.poll(self.poll_s)

    async def _dispatch(self, polled: dict[str, list[Record]]) -> None:  # type: ignore[arg-type]
        """Each topic's records to its handler; one handled is taken out, so a retry after a
        failing handler goes on with the rest and hands nothing over twice."""
        for topic in list(polled):
            await self.follows[topic][0](polled[topic])
            del polled[topic]
