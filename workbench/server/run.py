"""Run ``workbench serve`` in a terminal: broker (if local), topics, the API, live status lines.

Ctrl-C (or SIGTERM) stops the server: clients are disconnected, the feeds commit what they
handled, and the broker stops if this run started it.
"""

from __future__ import annotations

import asyncio
import sys
import threading

from workbench.broker import local_broker_for
from workbench.config import Settings
from workbench.live import REFRESH_S, StatusDisplay
from workbench.server.app import ApiServer, ServeConfig, freeze_startup_objects
from workbench.stopping import stop_signals


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _status(server: ApiServer) -> list[str]:
    m = server.feeds.metrics()
    clients = m["clients"]
    workers = m["workers"]
    return [
        "readings: " + server.feeds.readings.metrics.snapshot().line(),
        f"workers: {len(workers)} publishing figures"
        + "".join(f" · {w} (partitions {_listed(f['partitions'])})" for w, f in workers.items()),
        f"alerts: {m['alerts']['active']:,} active · "
        f"{m['alerts']['stored_updates']:,} stored updates",
        "clients: "
        + " · ".join(f"{n:,} {ch}" for ch, n in clients["clients"].items())
        + f" · {clients['dropped_msgs']:,} msgs dropped",
    ]


def _listed(partitions: list[int]) -> str:
    return ", ".join(map(str, partitions)) or "none"


async def _serve(settings: Settings, config: ServeConfig, stop: threading.Event) -> None:
    # Made here, on the running loop: the readings source emits on the loop it was made on.
    server = ApiServer(settings, config)
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
            display.update(lambda: _status(server))
            await asyncio.sleep(REFRESH_S)
    finally:
        _say("stopping: disconnecting clients, committing what was handled…")
        await server.stop()


def run_server(settings: Settings, config: ServeConfig) -> int:
    """Serve until Ctrl-C or SIGTERM."""
    with stop_signals() as stop, local_broker_for(settings):
        created = config.topics.ensure(settings)
        if created:
            _say(f"created topics {', '.join(created)}")
        asyncio.run(_serve(settings, config, stop))
    _say("stopped")
    return 0
