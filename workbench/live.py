"""Run the live workbench in a terminal: local broker, topics, simulator, pipeline, live figures.

``workbench up`` and ``workbench consume`` share this. Ctrl-C (or SIGTERM) stops, in order, the
simulator, the pipeline (which commits what it handled) and the broker if this run started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from workbench.alerts.publish import AlertPublisher
from workbench.broker import local_broker_for
from workbench.config import Settings
from workbench.stopping import stop_signals
from workbench.streams.clients import make_producer
from workbench.streams.detect import DetectionStage, live_detection_stage
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import ensure_topics

REFRESH_S = 1.0
log = logging.getLogger(__name__)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class StatusDisplay:
    """Status lines redrawn in place on a terminal; printed every few seconds elsewhere (logs)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last_print = 0.0
        self.drawn = 0

    def update(self, status: Callable[[], list[str]]) -> None:
        """Show ``status()``; if it fails, log why and carry on: a status line is never worth
        the command that shows it."""
        try:
            self.show(status())
        except Exception:
            log.exception("the status line failed; carrying on")

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
    source = from_kafka_readings(settings, group_id=group_id, start="latest")
    producer = make_producer(settings, client_id="workbench-alerts")
    stage = live_detection_stage(AlertPublisher(producer))
    source.sink(stage)
    source.start()
    display = StatusDisplay()
    try:
        while not stop.is_set():
            display.update(
                lambda: [
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


def run_live(
    settings: Settings,
    simulate: bool,
    group_id: str,
    devices: int = 200,
    rate: float = 1000.0,
    anomaly_rate: float | None = None,
    seed: int | None = None,
    dashboard_port: int | None = None,
    tls: tuple[Path, Path] | None = None,
) -> int:
    """Bring everything up, show live figures until Ctrl-C, then take down what was started.

    With ``dashboard_port`` the Voilà dashboard is served there too (HTTPS only with ``tls``,
    a certificate and its key) and its link printed.
    """
    simulator_lines: list[str] = []

    def simulator_progress(message: str) -> None:
        simulator_lines[:] = [f"simulator: {message}"]

    with stop_signals() as stop, local_broker_for(settings), contextlib.ExitStack() as exits:
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

            voila_log = settings.data_dir / "voila.log"
            token = exits.enter_context(link_token(settings, "workbench up"))
            dashboard = start_dashboard(settings, port=dashboard_port, log=voila_log, tls=tls)
            link = dashboard_url("127.0.0.1", dashboard_port, token, tls=tls is not None)
            _say(f"dashboard: {link}  (log: {voila_log})")
        for t in threads:
            t.start()
        _say(f"live on {settings.bootstrap} ({settings.backend}); Ctrl-C stops everything")
        try:
            asyncio.run(_run_pipeline(settings, group_id, lambda: simulator_lines, stop))
        finally:
            stop.set()
            for t in threads:
                t.join(60)
            for line in simulator_lines:  # its final count: what was delivered, what was not
                _say(line)
            if dashboard is not None:
                stop_dashboard(dashboard)
    _say("stopped")
    return 0
