"""``workbench bench serve``: WebSocket delivery while the real pipeline ingests at a given rate.

The simulator (its own process) publishes ``rate`` readings/s to a fresh topic on the real broker;
the API server (this process, its own loop thread) runs its pipeline on that topic; ``clients``
WebSocket clients (another process) each hold an /alerts and a /metrics socket. Delivery latency
is the client's receipt time minus the time the server created the message (same machine, same
clock); it is taken after a warm-up, over ``seconds``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np

from workbench.bench.ingest import peak_rss_mb
from workbench.config import Settings
from workbench.security.tokens import TokenStore
from workbench.server.app import ServeConfig, freeze_startup_objects
from workbench.server.background import BackgroundServer
from workbench.store.db import Database
from workbench.streams.topics import ensure_topics
from workbench.streams.worker import WorkerTopics

CHANNELS = ("/alerts", "/metrics")
_AT = re.compile(rb'"at":([0-9.]+)')
PROGRESS_S = 5.0


async def _clients(url: str, token: str, clients: int, conn: Connection) -> dict[str, object]:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    headers = {"Authorization": f"Bearer {token}"}
    sockets = [
        await websocket_connect(HTTPRequest(url + path, headers=headers), max_message_size=2**26)
        for _ in range(clients)
        for path in CHANNELS
    ]
    loop = asyncio.get_running_loop()
    freeze_startup_objects()
    conn.send(len(sockets))
    start, until = await loop.run_in_executor(None, conn.recv)
    latencies: list[float] = []
    counts = {"messages": 0, "alerts": 0}

    async def read(ws: object) -> None:
        while True:
            message = await ws.read_message()  # type: ignore[attr-defined]
            now = time.time()
            if message is None or now >= until:
                return
            head = message[:80]
            at = float(_AT.search(head.encode() if isinstance(head, str) else head).group(1))
            if at >= start:
                latencies.append((now - at) * 1000.0)
                counts["messages"] += 1
                counts["alerts"] += message.count('"alert_id"')

    readers = [asyncio.ensure_future(read(ws)) for ws in sockets]
    await asyncio.wait(readers, timeout=until - time.time() + 5.0)
    for ws in sockets:
        ws.close()
    lat = np.asarray(latencies)
    percentiles = np.percentile(lat, [50, 95, 99]) if lat.size else [float("nan")] * 3
    return {
        **counts,
        "latency_ms": {
            "p50": float(percentiles[0]),
            "p95": float(percentiles[1]),
            "p99": float(percentiles[2]),
            "max": float(lat.max()) if lat.size else float("nan"),
        },
    }


def _clients_process(url: str, token: str, clients: int, conn: Connection) -> None:
    """Entry point of the clients' process: connect, report, measure, send the figures back."""
    conn.send(asyncio.run(_clients(url, token, clients, conn)))


def _simulator_process(
    settings: Settings, devices: int, rate: float, topic: str, stop: threading.Event
) -> None:
    """Entry point of the simulator's process: publish until ``stop`` is set."""
    from workbench.simulator.run import run_simulator

    run_simulator(
        settings,
        devices=devices,
        rate=rate,
        seed=1,
        readings_topic=topic,
        truth_topic=f"{topic}.truth",
        stop_event=stop,
    )


def run_serve_bench(
    settings: Settings,
    clients: int = 100,
    rate: float = 10_000.0,
    devices: int = 2_000,
    seconds: float = 20.0,
    warmup_s: float = 10.0,
    progress: Callable[[str], None] = print,
) -> dict[str, object]:
    """Run the benchmark; the figures as one JSON-able dict."""
    topics = WorkerTopics.prefixed(f"workbench.bench.{uuid.uuid4().hex[:8]}.")
    topics.ensure(settings)
    topic = topics.readings
    ensure_topics(settings, {f"{topic}.truth": 1})
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as tmp:
        db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
        token, _ = TokenStore(db).create("bench", "viewer", "workbench bench serve")
        config = ServeConfig(port=0, topics=topics, group_id=f"bench-{topic}", start="earliest")
        background = BackgroundServer(settings, config, db)
        freeze_startup_objects()
        server = background.server
        try:
            progress(f"server on {server.url}; connecting {clients:,} clients × {len(CHANNELS)}…")
            ours, theirs = spawn.Pipe()
            client_proc = spawn.Process(
                target=_clients_process, args=(server.ws_url, token, clients, theirs), daemon=True
            )
            client_proc.start()
            sockets = ours.recv()
            progress(f"{sockets:,} sockets open; simulator at {rate:,.0f} readings/s…")
            stop = spawn.Event()
            sim = spawn.Process(
                target=_simulator_process, args=(settings, devices, rate, topic, stop), daemon=True
            )
            sim.start()
            while not background.call(lambda: server.feeds.readings.metrics.total):
                time.sleep(0.1)  # the simulator's process is up and readings flow
            progress(f"readings flow; warming up for {warmup_s:.0f} s, then measuring…")
            start = time.time() + warmup_s
            ours.send((start, start + seconds))
            try:
                figures = _watch(background, start, seconds, progress)
                client = ours.recv()
            finally:
                stop.set()
                client_proc.join(10)
                sim.join(30)
        finally:
            background.stop()
            db.close()
    elapsed = seconds
    return {
        "clients": clients,
        "sockets": sockets,
        "offered_readings_per_s": rate,
        "devices": devices,
        "seconds": seconds,
        "backend": settings.backend,
        "ingested_readings_per_s": round(figures["ingested"] / elapsed),
        "messages_per_s": round(client["messages"] / elapsed),
        "alerts_per_s": round(client["alerts"] / elapsed),
        "delivery_latency_ms": {k: round(v, 1) for k, v in client["latency_ms"].items()},
        "ingest_latency_ms": figures["ingest_latency_ms"],
        "dropped_msgs": figures["dropped_msgs"],
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def _watch(
    background: BackgroundServer, start: float, seconds: float, progress: Callable[[str], None]
) -> dict[str, object]:
    """Follow the feeds until the window ends; what they ingested and dropped in the window."""
    feeds = background.server.feeds

    def sample() -> dict:
        return background.call(feeds.metrics)

    while time.time() < start:
        time.sleep(0.1)
    first = sample()
    background.call(feeds.readings.metrics.reset_latency)
    while time.time() < start + seconds:
        time.sleep(min(PROGRESS_S, max(0.0, start + seconds - time.time())))
        m = sample()
        progress(
            f"  {m['readings']['messages_per_s']:,.0f} readings/s ingested · "
            f"{m['alerts']['active']:,} active alerts · "
            f"{m['clients']['dropped_msgs']:,} msgs dropped"
        )
    last = sample()
    p = last["readings"]
    return {
        "ingested": p["total"] - first["readings"]["total"],
        "ingest_latency_ms": {
            k: round(p[f"latency_ms_{k}"] or 0.0, 1) for k in ("p50", "p95", "p99")
        },
        "dropped_msgs": last["clients"]["dropped_msgs"] - first["clients"]["dropped_msgs"],
    }


def format_table(f: dict) -> str:
    """The figures in a few lines."""
    d, i = f["delivery_latency_ms"], f["ingest_latency_ms"]
    return "\n".join(
        [
            f"{f['clients']:,} clients ({f['sockets']:,} sockets: /alerts and /metrics each), "
            f"{f['offered_readings_per_s']:,.0f} readings/s offered from {f['devices']:,} devices "
            f"({f['backend']}), measured over {f['seconds']:.0f} s",
            f"ingested:  {f['ingested_readings_per_s']:,} readings/s · ingest latency p50/p95/p99 "
            f"{i['p50']:.0f} / {i['p95']:.0f} / {i['p99']:.0f} ms",
            f"delivered: {f['messages_per_s']:,} msgs/s ({f['alerts_per_s']:,} alerts/s) · "
            f"delivery latency p50/p95/p99 {d['p50']:.1f} / {d['p95']:.1f} / {d['p99']:.1f} ms "
            f"(max {d['max']:.0f} ms) · {f['dropped_msgs']:,} msgs dropped",
            f"peak memory of the server process {f['peak_rss_mb']:,.0f} MB",
        ]
    )
