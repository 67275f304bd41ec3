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

from workbench.broker import local_broker_for
from workbench.config import Settings
from workbench.stopping import stop_signals
from workbench.streams.topics import ensure_topics
from workbench.streams.worker import Worker, WorkerConfig, run_worker

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


async def _run_pipeline(
    settings: Settings, group_id: str, status: Callable[[], list[str]], stop: threading.Event
) -> None:
    worker = Worker(settings, WorkerConfig(group_id=group_id, start="latest"))
    display = StatusDisplay()

    def show(lines: Callable[[], list[str]]) -> None:
        display.update(lambda: [*status(), *lines()])

    await run_worker(worker, stop, show)


def run_worker_command(settings: Settings, config: WorkerConfig) -> int:
    """``workbench worker``: one detection worker of a group, with live figures, until Ctrl-C.

    Starts the local broker when no cluster is configured, like every command; workers of one
    group on several machines point at one cluster instead.
    """
    with stop_signals() as stop, local_broker_for(settings):
        created = config.topics.ensure(settings)
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
