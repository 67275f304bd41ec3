"""``workbench bench scale``: readings/s with full detection per number of workers, and latency.

For each worker count, in one run on the real broker:

- **throughput**: N ``workbench worker`` processes of a fresh group read a pre-filled topic of
  simulated readings (unique devices, times and sequence numbers) with full detection, alerts
  published and state checkpointed; the rate is taken from the workers' own figures once the
  group has settled (every worker owns partitions), up to 95 % of the topic;
- **latency**: a simulator process offers each rate to a fresh topic for ``seconds``; the
  workers' produce → processed (alerts published) p50/p95/p99, the worst worker's;
- the bare client's consume rate on the same records, for scale.

Targets (this project's issue 12): 2 workers give at least 1.7× one; one worker does at least
100k readings/s with kafka-python, 250k/s with confluent.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from workbench.bench.ingest import raw_consume_rate
from workbench.config import Settings
from workbench.streams.clients import make_producer
from workbench.streams.follow import TopicFollower
from workbench.streams.records import Record
from workbench.streams.topics import READING_PARTITIONS, ensure_topics
from workbench.streams.worker import WorkerTopics, published_figures
from workbench.supervisor import Supervisor

SINGLE_TARGET = {"kafka-python": 100_000.0, "confluent": 250_000.0}
"""Readings/s one worker must sustain with full detection, per client backend."""
SCALING_TARGET = 1.7
"""Two workers' throughput over one worker's."""
SETTLE_TIMEOUT_S = 120.0


class BacklogTooSmall(ValueError):
    """The pre-filled topic was mostly handled before the group settled: no rate to measure."""


def check_left_to_time(count: int, done_from: int, workers: int) -> None:
    """Refuse a run whose workers handled more than three quarters of the ``count`` readings
    before they all owned partitions (``done_from``): what is left is too little to time."""
    if count - done_from < count / 4:
        raise BacklogTooSmall(
            f"{workers} worker(s) handled {done_from:,} of the {count:,} readings before every "
            f"worker owned partitions, so what is left is too little to time; offer at least "
            f"{2 * done_from:,} readings (--readings)"
        )


def _fill(settings: Settings, topic: str, count: int, devices: int) -> None:
    """``count`` unique simulated readings (``devices`` devices, times up to now) on ``topic``."""
    from workbench.schema import encode
    from workbench.simulator import simulate

    rate = float(devices)  # each device reports once a second
    start = datetime.now(UTC) - timedelta(seconds=count / rate)
    producer = make_producer(settings.with_(backend="confluent"), client_id="bench-scale-fill")
    for reading, _truths in simulate(devices, rate, count, seed=7, start=start):
        producer.send(topic, encode(reading), key=reading.device_id.encode())
    producer.flush(300)
    producer.close()


class WorkerFigures:
    """The workers' latest figures, followed on a thread of its own (its own event loop)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(settings, topic), daemon=True)
        self._thread.start()

    def _run(self, settings: Settings, topic: str) -> None:
        async def follow() -> None:
            async def take(records: list[Record]) -> None:
                for f in published_figures(records)[0]:
                    self.latest[str(f["worker"])] = f

            follower = TopicFollower(settings, topic, take)
            follower.start()
            while not self._stop.is_set():
                await asyncio.sleep(0.1)
            await follower.stop()

        asyncio.run(follow())

    def of(self, names: list[str]) -> list[dict[str, Any]]:
        return [self.latest[n] for n in names if n in self.latest]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def group_settled(figures: list[dict[str, Any]], workers: int) -> bool:
    """True once ``workers`` workers publish figures and share every partition."""
    owned = [p for f in figures for p in f["partitions"]]
    return (
        len(figures) == workers
        and all(f["partitions"] for f in figures)
        and sorted(owned) == list(range(READING_PARTITIONS))
    )


def wait_settled(supervisor: Supervisor, figures: WorkerFigures) -> list[str]:
    """Keep the supervisor's workers alive until they share every partition; their names."""
    names = [w.name for w in supervisor.workers]
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while not group_settled(figures.of(names), len(names)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(names)} workers did not share the partitions in time")
        supervisor.check()
        time.sleep(0.2)
    return names


def _throughput(
    settings: Settings, prefix: str, workers: int, count: int, log_dir: Path
) -> dict[str, Any]:
    topics = WorkerTopics.prefixed(prefix)
    group = f"bench-scale-{uuid.uuid4().hex[:6]}"
    figures = WorkerFigures(settings, topics.metrics)
    supervisor = Supervisor(
        settings, group, log_dir, workers=workers, start="earliest", topics_prefix=prefix
    )
    try:
        names = wait_settled(supervisor, figures)
        began, done_from = time.monotonic(), sum(f["pipeline"]["total"] for f in figures.of(names))
        check_left_to_time(count, done_from, workers)
        cpu = supervisor.cpu_shares()  # from here on
        total = done_from
        while total < 0.95 * count:
            if time.monotonic() - began > 600:
                raise TimeoutError(f"{workers} workers handled only {total:,} readings in 600 s")
            supervisor.check()
            time.sleep(0.2)
            total = sum(f["pipeline"]["total"] for f in figures.of(names))
        took = time.monotonic() - began
        cpu = supervisor.cpu_shares()
    finally:
        supervisor.stop()
        figures.close()
    return {
        "readings_per_s": round((total - done_from) / took),
        "measured_readings": total - done_from,
        "measured_s": round(took, 1),
        "cpu_per_worker": {n: round(c, 2) for n, c in cpu.items()},
    }


def simulator_process(settings: Settings, topic: str, rate: float, seconds: float) -> None:
    """Entry point of the simulator's process (it publishes ground truth beside the readings)."""
    from workbench.simulator.run import run_simulator

    ensure_topics(settings, {f"{topic}.truth": 1})

    run_simulator(
        settings.with_(backend="confluent"),
        devices=max(100, int(rate / 2)),
        rate=rate,
        duration_s=seconds,
        seed=3,
        readings_topic=topic,
        truth_topic=f"{topic}.truth",
    )


def _latency(
    settings: Settings, workers: int, rate: float, seconds: float, log_dir: Path
) -> dict[str, Any]:
    prefix = f"workbench.bench.{uuid.uuid4().hex[:8]}."
    topics = WorkerTopics.prefixed(prefix)
    topics.ensure(settings)
    group = f"bench-latency-{uuid.uuid4().hex[:6]}"
    figures = WorkerFigures(settings, topics.metrics)
    supervisor = Supervisor(settings, group, log_dir, workers=workers, topics_prefix=prefix)
    spawn = multiprocessing.get_context("spawn")
    try:
        names = wait_settled(supervisor, figures)
        before = sum(f["pipeline"]["total"] for f in figures.of(names))
        sim = spawn.Process(
            target=simulator_process, args=(settings, topics.readings, rate, seconds)
        )
        sim.start()
        sim.join(seconds + 120)
        time.sleep(2)  # the last readings reach the figures
        last = figures.of(names)
        handled = sum(f["pipeline"]["total"] for f in last) - before
    finally:
        supervisor.stop()
        figures.close()
    pipelines = [f["pipeline"] for f in last]
    worst = {
        q: max((p[f"latency_ms_{q}"] or 0.0 for p in pipelines), default=None)
        for q in ("p50", "p95", "p99")
    }
    return {
        "offered_readings_per_s": rate,
        "handled_readings_per_s": round(handled / seconds),
        "latency_ms": {q: round(v, 1) for q, v in worst.items() if v is not None},
    }


def run_scale_bench(
    settings: Settings,
    workers: Sequence[int] = (1, 2),
    rates: Sequence[float] = (1_000, 10_000),
    readings: int = 1_000_000,
    devices: int = 10_000,
    seconds: float = 20.0,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark; the figures as one JSON-able dict, with the targets' verdicts."""
    prefix = f"workbench.bench.{uuid.uuid4().hex[:8]}."
    topics = WorkerTopics.prefixed(prefix)
    topics.ensure(settings)
    progress(f"filling {topics.readings} with {readings:,} simulated readings…")
    _fill(settings, topics.readings, readings, devices)
    progress(f"bare {settings.backend} client on the same records…")
    raw = raw_consume_rate(settings, topics.readings, readings)
    results = []
    with tempfile.TemporaryDirectory(prefix="workbench-bench-scale-") as tmp:
        for n in workers:
            progress(f"{n} worker(s): throughput with full detection…")
            row: dict[str, Any] = {"workers": n}
            row |= _throughput(settings, prefix, n, readings, Path(tmp) / f"t{n}")
            progress(f"  {row['readings_per_s']:,} readings/s")
            row["latency"] = []
            for rate in rates:
                progress(f"{n} worker(s): latency at {rate:,.0f} readings/s for {seconds:.0f} s…")
                row["latency"].append(_latency(settings, n, rate, seconds, Path(tmp) / f"l{n}"))
            results.append(row)
    by_n = {r["workers"]: r["readings_per_s"] for r in results}
    checks = {}
    if 1 in by_n:
        target = SINGLE_TARGET[settings.backend]
        checks["one_worker_readings_per_s"] = {"target": target, "met": by_n[1] >= target}
    if 1 in by_n and 2 in by_n:
        ratio = by_n[2] / by_n[1]
        checks["two_workers_over_one"] = {
            "ratio": round(ratio, 2),
            "target": SCALING_TARGET,
            "met": ratio >= SCALING_TARGET,
        }
    return {
        "backend": settings.backend,
        "readings": readings,
        "devices": devices,
        "raw_client_readings_per_s": round(raw),
        "workers": results,
        "targets": checks,
        "ok": all(c["met"] for c in checks.values()),
    }


def format_table(figures: dict[str, Any]) -> str:
    """The figures as a table with units, then the targets."""
    lines = [
        f"{figures['backend']}: {figures['readings']:,} readings of {figures['devices']:,} "
        f"devices; bare client {figures['raw_client_readings_per_s']:,} readings/s",
        "workers  readings/s (full detection)  CPU per worker (cores)  offered/s  "
        "handled/s  p50 ms  p95 ms  p99 ms",
    ]
    for row in figures["workers"]:
        cpu = ", ".join(f"{c:.2f}" for c in row["cpu_per_worker"].values()) or "–"
        head = f"{row['workers']:>7}  {row['readings_per_s']:>27,}  {cpu:>22}"
        for i, lat in enumerate(row["latency"] or [None]):
            prefix = head if i == 0 else " " * len(head)
            if lat is None:
                lines.append(prefix)
                continue
            ms = lat["latency_ms"]
            lines.append(
                f"{prefix}  {lat['offered_readings_per_s']:>9,.0f}  "
                f"{lat['handled_readings_per_s']:>9,}  {ms.get('p50', 0):>6,.0f}  "
                f"{ms.get('p95', 0):>6,.0f}  {ms.get('p99', 0):>6,.0f}"
            )
    for name, check in figures["targets"].items():
        got = f" (got {check['ratio']}×)" if "ratio" in check else ""
        verdict = "met" if check["met"] else "NOT met"
        lines.append(f"target {name.replace('_', ' ')} ≥ {check['target']:,}{got}: {verdict}")
    return "\n".join(lines)
