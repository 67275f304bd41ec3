"""Run ``workbench serve`` in a terminal: broker (if local), topics, the API, live status lines.

Ctrl-C (or SIGTERM) stops the server: clients are disconnected, the pipeline commits what it
handled, and the broker stops if this run started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from workbench.broker import local_broker_for
from workbench.config import Settings
from workbench.live import REFRESH_S, StatusDisplay
from workbench.server.app import ApiServer, ServeConfig, freeze_startup_objects
from workbench.streams.topics import ensure_topics


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def _serve(server: ApiServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    freeze_startup_objects()
    tls = "TLS" if server.config.certfile else "no TLS"
    pseudo = "device ids pseudonymised" if server.config.pseudonymiser else "real device ids"
    _say(f"serving on {server.url} and {server.ws_url} ({tls}, {pseudo}); Ctrl-C stops")
    if not await server.in_db(server.tokens.list):
        _say("no tokens yet: create one with `workbench token create NAME --role admin`")
    display = StatusDisplay()
    try:
        while not stop.is_set():
            m = server.pipeline.metrics()
            clients = m["clients"]
            display.show(
                [
                    "pipeline: " + server.pipeline.source.metrics.snapshot().line(),
                    f"alerts: {m['alerts']['active']:,} active · "
                    f"{m['alerts']['stored_updates']:,} stored updates",
                    "clients: "
                    + " · ".join(f"{n:,} {ch}" for ch, n in clients["clients"].items())
                    + f" · {clients['dropped_msgs']:,} msgs dropped",
                ]
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), REFRESH_S)
    finally:
        _say("stopping: disconnecting clients, committing what was handled…")
        await server.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_server(settings: Settings, config: ServeConfig) -> int:
    """Serve until Ctrl-C."""
    with local_broker_for(settings):
        created = ensure_topics(settings)
        if created:
            _say(f"created topics {', '.join(created)}")
        asyncio.run(_serve(ApiServer(settings, config)))
    _say("stopped")
    return 0
