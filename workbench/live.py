"""Run the live workbench in a terminal: local broker, topics, simulator, pipeline, live figures.

``workbench up`` and ``workbench consume`` share this. Ctrl-C (or SIGTERM) stops, in order, the
simulator, the pipeline (which commits what it handled) and the broker if this run started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable

from workbench.alerts.publish import AlertPublisher
from workbench.broker import local_broker_for
from workbench.config import Settings
from workbench.models.ensemble import EnsembleDetector
from workbench.streams.clients import make_producer
from workbench.streams.detect import DetectionStage
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import ensure_topics

REFRESH_S = 1.0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StatusDisplay:
    """Status lines redrawn in place on a terminal; printed every few seconds elsewhere (logs)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.drawn = 0

    def show(self, lines: list[str]) -> None:
        now = time.monotonic()
        if self.tty:
            up = f"\033[{self.drawn}F" if self.drawn else ""
            sys.stderr.write(up + "".join(f"\033[2K{line}\n" for line in lines))
            sys.stderr.flush()
            self.drawn = len(lines)
        elif now - self.last_print >= 5 * REFRESH_S:
            _say(" | ".join(lines))
            self.last_print = now


def _alert_line(stage: DetectionStage) -> str:
    active = stage.manager.active
    by_severity = {sev: sum(a.severity == sev for a in active) for sev in ("high", "medium", "low")}
    latest = next(reversed(stage.manager.history.values()), None)
    counts = " · ".join(f"{n} {sev}" for sev, n in by_severity.items())
    tail = f" · latest: [{latest.severity}] {latest.explanation}" if latest else ""
    return f"{len(active)} active ({counts}) · {len(stage.manager.history):,} in history{tail}"


async def _run_pipeline(
    settings: Settings, group_id: str, status: Callable[[], list[str]], stop: threading.Event
) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    source = from_kafka_readings(settings, group_id=group_id, start="latest")
    producer = make_producer(settings, client_id="workbench-alerts")
    stage = DetectionStage(EnsembleDetector(), publisher=AlertPublisher(producer))
    source.sink(stage)
    source.start()
    display = StatusDisplay()
    try:
        while not stop.is_set():
            display.show(
                [
                    *status(),
                    "pipeline: " + source.metrics.snapshot().line(),
                    "alerts: " + _alert_line(stage),
                ]
            )
            await asyncio.sleep(REFRESH_S)
    finally:
        _say("stopping: committing what was handled…")
        source.stop()
        await source.wait_stopped()
        stage.close()
        producer.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def run_live(
    settings: Settings,
    simulate: bool,
    group_id: str,
    devices: int = 200,
    rate: float = 1000.0,
    anomaly_rate: float | None = None,
    seed: int | None = None,
    dashboard_port: int | None = None,
) -> int:
    """Bring everything up, show live figures until Ctrl-C, then take down what was started.

    With ``dashboard_port`` the Voilà dashboard is served there too and its link printed.
    """
    stop = threading.Event()
    simulator_lines: list[str] = []

    def simulator_progress(message: str) -> None:
        simulator_lines[:] = [f"simulator: {message}"]

    with local_broker_for(settings), contextlib.ExitStack() as exits:
        created = ensure_topics(settings)
        if created:
            _say(f"created topics {', '.join(created)}")
        threads = []
        if simulate:
            from workbench.simulator.run import run_simulator

            kwargs = {"devices": devices, "rate": rate, "seed": seed, "stop_event": stop}
            if anomaly_rate is not None:
                kwargs["anomaly_rate"] = anomaly_rate
            threads.append(
                threading.Thread(
                    target=run_simulator,
                    args=(settings,),
                    kwargs={**kwargs, "progress": simulator_progress},
                    name="workbench-simulator",
                )
            )
        dashboard = None
        if dashboard_port is not None:
            from workbench.voila import dashboard_url, link_token, start_dashboard, stop_dashboard

            log = settings.data_dir / "voila.log"
            token = exits.enter_context(link_token(settings, "workbench up"))
            dashboard = start_dashboard(settings, port=dashboard_port, log=log)
            _say(f"dashboard: {dashboard_url('127.0.0.1', dashboard_port, token)}  (log: {log})")
        for t in threads:
            t.start()
        _say(f"live on {settings.bootstrap} ({settings.backend}); Ctrl-C stops everything")
        try:
            asyncio.run(_run_pipeline(settings, group_id, lambda: simulator_lines, stop))
        finally:
            stop.set()
            for t in threads:
                t.join(60)
            if dashboard is not None:
                stop_dashboard(dashboard)
    _say("stopped")
    return 0
