"""Run the live workbench in a terminal, with live figures.

``workbench up``: local broker, topics, the simulator and the detection workers as processes of
their own (kept alive by :mod:`workbench.supervisor`), the dashboard. ``workbench worker``: one
worker in the foreground. Ctrl-C (or SIGTERM) stops, in order, the simulator,
the workers (each commits what it handled), the dashboard and the broker if this run started it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from workbench.alerts.model import Alert
from workbench.alerts.publish import decode_alert
from workbench.broker import local_broker_for
from workbench.config import Settings
from workbench.stopping import stop_signals
from workbench.streams.clients import make_producer
from workbench.streams.follow import TopicFollower, decode_each
from workbench.streams.records import Record
from workbench.streams.topics import READING_PARTITIONS, ensure_topics
from workbench.streams.worker import (
    TOPIC_PREFIX_ENV,
    Worker,
    WorkerConfig,
    alert_line,
    published_figures,
    run_worker,
)
from workbench.supervisor import AutoScaler, Supervisor

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


def run_worker_command(settings: Settings, config: WorkerConfig) -> int:
    """``workbench worker``: one detection worker of a group, with live figures, until Ctrl-C.

    Starts the local broker when no cluster is configured, like every command; workers of one
    group on several machines point at one cluster instead.
    """
    with stop_signals() as stop, local_broker_for(settings):
        created = config.topics.ensure(settings, groups=(config.group_id,))
        if created:
            _say(f"created topics {', '.join(created)}")
        _say(
            f"worker {config.worker_id} of group {config.group_id} on {settings.bootstrap} "
            f"({settings.backend}); Ctrl-C stops it"
        )
        display = StatusDisplay()

        async def work() -> None:  # the worker's source is made on the loop that runs it
            await run_worker(Worker(settings, config), stop, display.update)

        asyncio.run(work())
    _say("stopped")
    return 0


class SimulatorProcess:
    """``workbench simulate`` as a child process, its latest progress line kept for the status."""

    def __init__(
        self,
        settings: Settings,
        devices: int,
        rate: float,
        seed: int | None,
        anomaly_rate: float | None,
    ) -> None:
        args = ["simulate", "--devices", str(devices), "--rate", str(rate)]
        if seed is not None:
            args += ["--seed", str(seed)]
        if anomaly_rate is not None:
            args += ["--anomaly-rate", str(anomaly_rate)]
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap}
        env["WORKBENCH_KAFKA_CLIENT"] = settings.backend
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # a terminal's Ctrl-C reaches `up` alone, which stops it
        )
        self.line = "starting"
        self._reader = threading.Thread(target=self._read, name="workbench-simulator-log")
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if line.strip():
                self.line = line.strip()

    def stop(self) -> str:
        """Stop it (SIGTERM: it waits for its last delivery reports); its final line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        return self.line


class AlertTally:
    """The alert states on the alerts topic: which are active, how many in all, the latest."""

    def __init__(self) -> None:
        self.states: dict[str, Alert] = {}
        self.latest: Alert | None = None

    async def take(self, records: list[Record]) -> None:
        for alert in decode_each(records, decode_alert):
            self.states[alert.alert_id] = self.latest = alert

    def line(self) -> str:
        active = [a for a in self.states.values() if a.status == "active"]
        return alert_line(active, len(self.states), self.latest)


async def _supervise(
    settings: Settings,
    supervisor: Supervisor,
    simulator: SimulatorProcess | None,
    stop: threading.Event,
) -> None:
    figures: dict[str, dict[str, Any]] = {}

    async def take_figures(records: list[Record]) -> None:
        for f in published_figures(records)[0]:
            figures[str(f.get("worker"))] = f

    tally = AlertTally()
    followers = [
        TopicFollower(settings, supervisor.topics.metrics, take_figures, start="latest"),
        TopicFollower(settings, supervisor.topics.alerts, tally.take),
    ]
    for follower in followers:
        follower.start()
    display = StatusDisplay()
    producer = make_producer(settings, client_id="workbench-supervisor")
    key = f"supervisor:{supervisor.group}".encode()
    try:
        while not stop.is_set():
            supervisor.check(figures)
            report = msgspec.json.encode(supervisor.report())
            try:  # the dashboard's copy: never a reason to stop supervising
                producer.send(supervisor.topics.metrics, report, key=key)
            except Exception as exc:
                log.warning("could not publish the supervisor's report: %s", exc)
            display.update(
                lambda: [
                    *([f"simulator: {simulator.line}"] if simulator else []),
                    *supervisor.status_lines(figures),
                    "alerts: " + tally.line(),
                ]
            )
            await asyncio.sleep(REFRESH_S)
    finally:
        producer.close()
        for follower in followers:
            await follower.stop()


def run_live(
    settings: Settings,
    group_id: str,
    devices: int = 200,
    rate: float = 1000.0,
    anomaly_rate: float | None = None,
    seed: int | None = None,
    dashboard_port: int | None = None,
    tls: tuple[Path, Path] | None = None,
    workers: int | str = 1,
) -> int:
    """``workbench up``: bring everything up, show live figures until Ctrl-C, then take down what
    was started, in order: the simulator, the workers (each commits what it handled), the
    dashboard, the broker if this run started it.

    ``workers``: how many detection worker processes, or 'auto' (1 up to the CPU count, by lag
    and CPU). With ``dashboard_port`` the Voilà dashboard is served there too (HTTPS only with
    ``tls``, a certificate and its key) and its link printed.
    """
    auto = workers == "auto"
    maximum = max(1, min(os.cpu_count() or 1, READING_PARTITIONS))
    with stop_signals() as stop, local_broker_for(settings), contextlib.ExitStack() as exits:
        created = ensure_topics(settings)
        if created:
            _say(f"created topics {', '.join(created)}")
        dashboard = None
        if dashboard_port is not None:
            from workbench.voila import dashboard_url, link_token, start_dashboard, stop_dashboard

            voila_log = settings.data_dir / "voila.log"
            token = exits.enter_context(link_token(settings, "workbench up"))
            dashboard = start_dashboard(  # on the usual topics, as `up`'s workers
                settings, port=dashboard_port, log=voila_log, tls=tls, env={TOPIC_PREFIX_ENV: ""}
            )
            link = dashboard_url("127.0.0.1", dashboard_port, token, tls=tls is not None)
            _say(f"dashboard: {link}  (log: {voila_log})")
        supervisor = Supervisor(
            settings,
            group_id,
            settings.data_dir / "workers",
            workers=1 if auto else int(workers),
            autoscaler=AutoScaler(maximum=maximum) if auto else None,
        )
        simulator = SimulatorProcess(settings, devices, rate, seed, anomaly_rate)
        scaled = f"auto, 1 to {maximum}" if auto else str(workers)
        _say(
            f"live on {settings.bootstrap} ({settings.backend}), workers: {scaled}; "
            "Ctrl-C stops everything"
        )
        try:
            asyncio.run(_supervise(settings, supervisor, simulator, stop))
        finally:
            _say(f"simulator: {simulator.stop()}")  # its final count: delivered, not delivered
            _say("stopping the workers: each commits what it handled…")
            supervisor.stop()
            if dashboard is not None:
                stop_dashboard(dashboard)
    _say("stopped")
    return 0
