"""``workbench up --workers N|auto``: detection workers as processes of their own, kept alive.

Each worker is a ``workbench worker`` child in one consumer group, so Kafka shares the partitions
out between them. One that dies is started again after a back-off (1 s, doubling up to 30 s; back
to 1 s once it has run for a minute), and the rest of the group covers its partitions meanwhile.
With ``auto`` the number of workers follows the data: one more while the consumer lag keeps
growing and every worker is busy, one fewer once the lag is gone and they idle (see
:class:`AutoScaler`). The figures come from the workers' own metrics topic.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psutil

from workbench.config import Settings
from workbench.streams.metrics import MetricsSnapshot
from workbench.streams.worker import WorkerTopics, partitions_line

log = logging.getLogger(__name__)
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0
"""A worker that has run this long starts its next back-off from the first step again."""
STOP_GRACE_S = 30.0
REPORTED_EVENTS = 10
"""Latest events in each report (the dashboard lists them)."""


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM if the supervisor dies (even by SIGKILL)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class WorkerProcess:
    """One worker child and its restart bookkeeping."""

    name: str
    log_path: Path
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = FIRST_BACKOFF_S
    due_at: float | None = None
    """When a dead worker is to be started again."""
    cpu: psutil.Process | None = None

    @property
    def state(self) -> str:
        """'running', or 'restarting' while it waits out its back-off."""
        return "running" if self.proc is not None else "restarting"


@dataclass
class AutoScaler:
    """How many workers the data needs, judged every ``interval_s`` from lag and CPU.

    Up by one when the total lag exceeds ``lag_up`` readings and grew since the last look while
    every worker used at least ``busy`` of a core; down by one when the lag is under ``lag_down``
    and every worker used under ``idle`` of a core for ``calm_s``. Nothing changes for
    ``cooldown_s`` after a change (the group rebalances meanwhile).
    """

    minimum: int = 1
    maximum: int = 4
    interval_s: float = 10.0
    lag_up: int = 20_000
    lag_down: int = 1_000
    busy: float = 0.7
    idle: float = 0.3
    calm_s: float = 60.0
    cooldown_s: float = 30.0
    _last_lag: int | None = None
    _calm_since: float | None = None
    _changed_at: float | None = None

    def want(self, current: int, lag: int, cpu: list[float], now: float) -> int:
        """The worker count to have after this look (``cpu``: each worker's share of a core)."""
        grew = self._last_lag is not None and lag > self._last_lag
        self._last_lag = lag
        cooling = self._changed_at is not None and now - self._changed_at < self.cooldown_s
        if lag < self.lag_down and cpu and max(cpu) < self.idle:
            self._calm_since = self._calm_since or now
        else:
            self._calm_since = None
        if cooling:
            return current
        if lag > self.lag_up and grew and cpu and min(cpu) >= self.busy and current < self.maximum:
            self._changed_at = now
            return current + 1
        calm = self._calm_since is not None and now - self._calm_since >= self.calm_s
        if calm and current > self.minimum:
            self._changed_at, self._calm_since = now, None
            return current - 1
        return current


class Supervisor:
    """Starts, watches and restarts ``workbench worker`` children; ``check()`` once a second."""

    def __init__(
        self,
        settings: Settings,
        group: str,
        log_dir: Path,
        workers: int = 1,
        autoscaler: AutoScaler | None = None,
        start: str = "latest",
        topics_prefix: str = "",
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers}: start at least 1")
        self.settings = settings
        self.group = group
        self.log_dir = log_dir
        self.autoscaler = autoscaler
        self.start_at = start
        self.topics = WorkerTopics.prefixed(topics_prefix)
        self.topics_prefix = topics_prefix
        self.workers: list[WorkerProcess] = []
        self.leaving: list[WorkerProcess] = []
        """Workers scaled away, stopping (checkpointing, committing) in their own time."""
        self.events: deque[str] = deque(maxlen=50)
        """Starts, exits, restarts and scaling, newest last, each with its time."""
        self.stopping = False
        self._next_look = time.monotonic()
        self._serial = 0
        log_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(workers):
            self._add()

    def _note(self, message: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {message}")
        log.info("%s", message)

    def _add(self) -> WorkerProcess:
        self._serial += 1
        name = f"{self.group}-{self._serial}"
        worker = WorkerProcess(name, self.log_dir / f"{name}.log")
        self.workers.append(worker)
        self._spawn(worker)
        return worker

    def _command(self, name: str) -> list[str]:
        return [
            sys.executable, "-m", "workbench.cli", "worker", "--group", self.group, "--id", name,
            "--start", self.start_at, "--topic-prefix", self.topics_prefix,
        ]  # fmt: skip

    def _spawn(self, worker: WorkerProcess) -> None:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.bootstrap,
            "WORKBENCH_KAFKA_CLIENT": self.settings.backend,
            "PYTHONUNBUFFERED": "1",
        }
        out: IO[Any] = worker.log_path.open("ab")
        try:
            worker.proc = subprocess.Popen(
                self._command(worker.name),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor alone
                preexec_fn=_die_with_parent,
            )
        finally:
            out.close()
        worker.started_at = time.monotonic()
        worker.due_at = None
        worker.cpu = psutil.Process(worker.proc.pid)
        self._note(f"started {worker.name} (pid {worker.proc.pid}; log {worker.log_path})")

    def check(self, figures: dict[str, dict[str, Any]] | None = None) -> None:
        """Restart workers that died (after their back-off); with auto-scaling, scale."""
        if self.stopping:
            return
        now = time.monotonic()
        self.leaving = [w for w in self.leaving if w.proc is not None and w.proc.poll() is None]
        for worker in self.workers:
            proc = worker.proc
            if proc is not None and proc.poll() is not None:
                if now - worker.started_at >= HEALTHY_AFTER_S:
                    worker.backoff_s = FIRST_BACKOFF_S
                worker.due_at = now + worker.backoff_s
                self._note(
                    f"{worker.name} exited with code {proc.returncode}; "
                    f"restarting in {worker.backoff_s:.0f} s"
                )
                worker.backoff_s = min(worker.backoff_s * 2, MAX_BACKOFF_S)
                worker.proc = None
            if worker.proc is None and worker.due_at is not None and now >= worker.due_at:
                worker.restarts += 1
                self._spawn(worker)
        if self.autoscaler is not None and now >= self._next_look:
            self._next_look = now + self.autoscaler.interval_s
            self._scale(figures or {}, now)

    def _scale(self, figures: dict[str, dict[str, Any]], now: float) -> None:
        assert self.autoscaler is not None
        mine = [figures[w.name] for w in self.workers if w.name in figures]
        lag = sum(f["pipeline"]["consumer_lag"] or 0 for f in mine)
        cpu = self.cpu_shares()
        want = self.autoscaler.want(len(self.workers), lag, list(cpu.values()), now)
        if want > len(self.workers):
            self._note(f"scaling up to {want} workers (lag {lag:,} readings)")
            self._add()
        elif want < len(self.workers):
            gone = self.workers.pop()
            self._note(
                f"scaling down to {want} workers (lag {lag:,} readings): stopping {gone.name}"
            )
            if gone.proc is not None:
                gone.proc.send_signal(signal.SIGTERM)
                self.leaving.append(gone)

    def cpu_shares(self) -> dict[str, float]:
        """Each running worker's CPU since the last call, as a share of one core."""
        shares = {}
        for w in self.workers:
            if w.proc is not None and w.cpu is not None:
                with contextlib.suppress(psutil.Error):
                    shares[w.name] = w.cpu.cpu_percent(None) / 100
        return shares

    def status_lines(self, figures: dict[str, dict[str, Any]]) -> list[str]:
        """A line per worker (partitions, figures, restarts) and the latest events."""
        lines = []
        for w in self.workers:
            f = figures.get(w.name)
            head = (
                f"worker {w.name}: {w.state} · {w.restarts} restart{'' if w.restarts == 1 else 's'}"
            )
            if f is None or w.proc is None:
                lines.append(head + " · no figures yet")
                continue
            snapshot = MetricsSnapshot(**f["pipeline"])
            parts = partitions_line(f["partitions"], snapshot.partition_lag)
            lines.append(f"{head} · partitions {parts} · {f['devices']:,} devices")
            lines.append(f"  pipeline: {snapshot.line()}")
        return lines + [f"  {e}" for e in list(self.events)[-3:]]

    def report(self) -> dict[str, Any]:
        """What the dashboard shows of this supervisor (published beside the workers' figures):
        its workers with their restarts, how it scales, and its latest events."""
        scaler = self.autoscaler
        return {
            "kind": "supervisor",
            "group": self.group,
            "at": time.time(),
            "scaling": None if scaler is None else {"min": scaler.minimum, "max": scaler.maximum},
            "workers": [
                {"name": w.name, "state": w.state, "restarts": w.restarts} for w in self.workers
            ]
            + [{"name": w.name, "state": "stopping", "restarts": w.restarts} for w in self.leaving],
            "events": list(self.events)[-REPORTED_EVENTS:],
        }

    def stop(self) -> None:
        """Stop every worker (SIGTERM: each checkpoints and commits), SIGKILL after a grace."""
        self.stopping = True
        _terminate(self.workers + self.leaving)


def _terminate(workers: list[WorkerProcess]) -> None:
    running = [w.proc for w in workers if w.proc is not None and w.proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in running:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker pid %d did not stop in %.0f s; killing it", proc.pid, STOP_GRACE_S)
            proc.kill()
            proc.wait(10)
