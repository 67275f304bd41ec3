"""Fan-out to WebSocket clients that can never stall the pipeline.

Each client has a bounded queue and its own writer task: publishing only appends to queues (the
oldest message is dropped, and counted, when one is full), and a writer that waits on a slow or
vanished client's socket holds up nobody else.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

CHANNELS = ("readings", "metrics", "alerts")
DEFAULT_QUEUE = 256
"""Messages a client may have waiting before the oldest is dropped."""

Send = Callable[[bytes], Awaitable[object]]


@dataclass(frozen=True)
class ReadingFilter:
    """Which readings a client wants: these devices and/or device types (empty: all)."""

    devices: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    def wants(self, device_id: str, device_type: str) -> bool:
        """True when a reading from this device passes the filter."""
        return (not self.devices or device_id in self.devices) and (
            not self.types or device_type in self.types
        )


class Client:
    """One connected socket: its queue, its writer, and what it was sent and lost."""

    def __init__(
        self,
        client_id: int,
        channel: str,
        send: Send,
        max_queue: int,
        name: str,
        wanted: ReadingFilter | None = None,
        token_id: str = "",
        disconnect: Callable[[int, str], object] = lambda code, reason: None,
    ) -> None:
        self.client_id = client_id
        self.channel = channel
        self.name = name
        self.token_id = token_id
        self.disconnect = disconnect
        """Closes the client's socket with a WebSocket close code and reason."""
        self.wanted = wanted or ReadingFilter()
        self.sent = 0
        self.dropped = 0
        self._send = send
        self._queue: deque[bytes] = deque()
        self._max_queue = max_queue
        self._ready = asyncio.Event()
        self._closed = False
        self.task = asyncio.ensure_future(self._write())

    def offer(self, message: bytes) -> None:
        """Queue a message (never waits); when full, the oldest queued one is dropped."""
        if self._closed:
            return
        if len(self._queue) >= self._max_queue:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(message)
        self._ready.set()

    async def _write(self) -> None:
        while not self._closed:
            await self._ready.wait()
            self._ready.clear()
            while self._queue and not self._closed:
                try:
                    await self._send(self._queue.popleft())
                except Exception:  # the socket closed under us: on_close removes the client
                    self._closed = True
                    return
                self.sent += 1

    def close(self) -> None:
        """Stop writing; queued messages are dropped."""
        self._closed = True
        self._ready.set()

    def stats(self) -> dict[str, object]:
        """What the metrics show for this client."""
        return {
            "id": self.client_id,
            "channel": self.channel,
            "principal": self.name,
            "queued_msgs": len(self._queue),
            "sent_msgs": self.sent,
            "dropped_msgs": self.dropped,
        }


class Hub:
    """The connected clients by channel; publishing is for the event loop's thread only."""

    def __init__(self, max_queue: int = DEFAULT_QUEUE) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue={max_queue}: a client queue holds at least 1 message")
        self.max_queue = max_queue
        self.clients: dict[str, dict[int, Client]] = {c: {} for c in CHANNELS}
        self._ids = itertools.count(1)
        self.dropped_gone = 0
        """Messages dropped for clients that have since disconnected."""

    def add(
        self,
        channel: str,
        send: Send,
        name: str,
        wanted: ReadingFilter | None = None,
        token_id: str = "",
        disconnect: Callable[[int, str], object] = lambda code, reason: None,
    ) -> Client:
        """Register a client on a channel; its writer starts at once."""
        client = Client(
            next(self._ids), channel, send, self.max_queue, name, wanted, token_id, disconnect
        )
        self.clients[channel][client.client_id] = client
        return client

    def remove(self, client: Client) -> None:
        """Forget a client (its socket closed)."""
        client.close()
        if self.clients[client.channel].pop(client.client_id, None) is not None:
            self.dropped_gone += client.dropped

    def publish(self, channel: str, message: bytes) -> None:
        """Queue one message for every client on a channel."""
        for client in self.clients[channel].values():
            client.offer(message)

    def all(self) -> list[Client]:
        """Every connected client."""
        return [c for by_id in self.clients.values() for c in by_id.values()]

    def wants_readings(self) -> bool:
        """True when any client listens to readings (so they need encoding at all)."""
        return bool(self.clients["readings"])

    def stats(self) -> dict[str, object]:
        """Client counts, drops in all and per client."""
        clients = [c.stats() for c in self.all()]
        return {
            "clients": {channel: len(by_id) for channel, by_id in self.clients.items()},
            "dropped_msgs": self.dropped_gone + sum(c["dropped_msgs"] for c in clients),
            "per_client": clients,
        }

    def close(self) -> None:
        """Stop every writer."""
        for client in self.all():
            client.close()
