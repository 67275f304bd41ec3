"""An API server on its own event-loop thread, for benchmarks, tests and notebooks that must not
give their own thread (or loop) to it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from workbench.config import Settings
from workbench.server.app import ApiServer, ServeConfig
from workbench.store.db import Database

T = TypeVar("T")


class BackgroundServer:
    """Starts an :class:`ApiServer` on a new thread's loop; ``stop()`` ends both."""

    def __init__(self, settings: Settings, config: ServeConfig, db: Database | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="workbench-api", daemon=True
        )
        self.thread.start()

        async def make() -> ApiServer:
            server = ApiServer(settings, config, db)
            await server.start()
            return server

        self.server = self.run(make())

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the server's loop (the feeds' state belongs to it)."""

        async def wrap() -> T:
            return fn()

        return self.run(wrap())

    def stop(self) -> None:
        """Stop the server (the feeds commit what they handled) and its thread."""
        self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
