"""``workbench bench ingest``: throughput and latency of source + decode + validate on real Kafka.

For each client backend, in one run: the raw consume rate of the bare client (no processing), the
sustained rate of the workbench source (poll, decode, validate, emit, commit) on the same records,
and end-to-end latency percentiles (record timestamp → batch handled) at several offered rates.
"""

from __future__ import annotations

import asyncio
import resource
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from workbench.config import BACKENDS, Settings
from workbench.streams.clients import (
    ConsumerOptions,
    confluent_consumer_config,
    kafka_python_consumer_config,
    make_producer,
)
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import ensure_topics

PASSES = 2
Payloads = Sequence[tuple[bytes, bytes]]
"""(key, value) pairs of encoded readings, produced round-robin."""


@dataclass
class BackendFigures:
    """What one client backend achieved."""

    raw_readings_per_s: float
    readings_per_s: float
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    """Offered rate (readings/s, as text) → p50/p95/p99 in ms."""

    @property
    def ratio(self) -> float:
        """Pipeline throughput as a fraction of the bare client's."""
        return self.readings_per_s / self.raw_readings_per_s if self.raw_readings_per_s else 0.0


def sample_payloads(devices: int, count: int, seed: int) -> list[tuple[bytes, bytes]]:
    """Realistic (key, value) readings from the simulator, timestamped in the recent past."""
    from workbench.schema import encode
    from workbench.simulator import simulate

    rate = 1000.0
    start = datetime.now(UTC) - timedelta(seconds=count / rate)
    return [
        (r.device_id.encode(), encode(r))
        for r, _truths in simulate(devices, rate, count, seed=seed, start=start)
    ]


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fill_topic(settings: Settings, topic: str, payloads: Payloads, count: int) -> None:
    """Produce ``count`` records cycling through ``payloads`` as fast as the client can."""
    producer = make_producer(settings, client_id="workbench-bench")
    n = len(payloads)
    for i in range(count):
        key, value = payloads[i % n]
        producer.send(topic, value, key=key)
    producer.flush(120)
    producer.close()


def raw_consume_rate(settings: Settings, topic: str, count: int) -> float:
    """Records/s of the bare client, configured as the source configures it, reading ``count``
    records with no processing at all (first record → last)."""
    options = ConsumerOptions(topic=topic, group_id=f"bench-raw-{uuid.uuid4().hex[:8]}")
    if settings.backend == "confluent":
        from confluent_kafka import Consumer

        consumer = Consumer(confluent_consumer_config(settings, options))
        consumer.subscribe([topic])

        def poll() -> int:
            return sum(1 for m in consumer.consume(10_000, 0.5) if m.error() is None)
    else:
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(topic, **kafka_python_consumer_config(settings, options))

        def poll() -> int:
            return sum(len(r) for r in consumer.poll(500, max_records=10_000).values())

    try:
        return _time_until(count, poll)
    finally:
        consumer.close()


def _time_until(count: int, poll: Callable[[], int]) -> float:
    seen = 0
    first = 0.0
    deadline = time.monotonic() + 300
    while seen < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {seen:,} of {count:,} records arrived in 300 s")
        got = poll()
        if got and not seen:
            first = time.perf_counter()
        seen += got
    return count / (time.perf_counter() - first)


async def _pipeline_rate(settings: Settings, topic: str, count: int) -> float:
    source = from_kafka_readings(settings, topic=topic, group_id=f"bench-{uuid.uuid4().hex[:8]}")
    seen = 0
    first = 0.0
    done = asyncio.Event()

    def count_batch(batch: object) -> None:
        nonlocal seen, first
        if not seen:
            first = time.perf_counter()
        seen += len(batch)  # type: ignore[arg-type]
        if seen >= count:
            done.set()

    source.sink(count_batch)
    source.start()
    try:
        await asyncio.wait_for(done.wait(), 300)
    finally:
        source.stop()
        await source.wait_stopped()
    if source.metrics.dead_lettered:
        raise RuntimeError(f"{source.metrics.dead_lettered} benchmark readings were dead-lettered")
    return count / (time.perf_counter() - first)


def pipeline_rate(settings: Settings, topic: str, count: int) -> float:
    """Readings/s through the workbench source (poll, decode, validate, emit), first → last."""
    return asyncio.run(_pipeline_rate(settings, topic, count))


async def _latency(
    settings: Settings, topic: str, payloads: Payloads, rate: float, seconds: float
) -> dict[str, float]:
    source = from_kafka_readings(
        settings, topic=topic, group_id=f"bench-lat-{uuid.uuid4().hex[:8]}", start="latest"
    )
    source.sink(lambda batch: None)
    source.start()
    while source.metrics.status != "consuming":
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)  # let the group settle before the clock starts
    producer = threading.Thread(
        target=_paced_producer, args=(settings, topic, payloads, rate, seconds), daemon=True
    )
    producer.start()
    await asyncio.sleep(1.0)  # warm-up, not measured
    source.metrics.reset_latency()
    while producer.is_alive():
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    snap = source.metrics.snapshot()
    source.stop()
    await source.wait_stopped()
    return {"p50": snap.latency_ms_p50, "p95": snap.latency_ms_p95, "p99": snap.latency_ms_p99}


def _paced_producer(
    settings: Settings,
    topic: str,
    payloads: Payloads,
    rate: float,
    seconds: float,
) -> None:
    producer = make_producer(settings, client_id="workbench-bench-paced")
    start = time.monotonic()
    sent = 0
    total = int(rate * seconds)
    n = len(payloads)
    while sent < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            key, value = payloads[sent % n]
            producer.send(topic, value, key=key)
            sent += 1
        time.sleep(0.001)
    producer.flush(30)
    producer.close()


def latency_at(
    settings: Settings, topic: str, payloads: Payloads, rate: float, seconds: float
) -> dict[str, float]:
    """End-to-end latency percentiles (ms) while ``rate`` readings/s flow for ``seconds``."""
    return asyncio.run(_latency(settings, topic, payloads, rate, seconds))


def run_ingest_bench(
    settings: Settings,
    payloads: Payloads,
    backends: Sequence[str] = BACKENDS,
    count: int = 500_000,
    rates: Sequence[float] = (1_000, 10_000),
    seconds: float = 10.0,
    progress: Callable[[str], None] = print,
) -> dict[str, object]:
    """Run every phase for every backend; returns the figures as one JSON-able dict."""
    run_id = uuid.uuid4().hex[:8]
    fill = f"workbench.bench.{run_id}.fill"
    live = f"workbench.bench.{run_id}.live"
    ensure_topics(settings, {fill: 6, live: 6})
    progress(f"producing {count:,} readings to {fill} (6 partitions)…")
    fill_topic(settings.with_(backend="confluent"), fill, payloads, count)
    results: dict[str, BackendFigures] = {}
    for backend in backends:
        s = settings.with_(backend=backend)
        raw = processed = 0.0
        for attempt in range(1, PASSES + 1):  # alternate, keep each one's best: machines are noisy
            progress(f"[{backend}] pass {attempt}/{PASSES}: raw consume of {count:,} records…")
            raw = max(raw, raw_consume_rate(s, fill, count))
            progress(f"[{backend}] pass {attempt}/{PASSES}: pipeline (decode + validate)…")
            processed = max(processed, pipeline_rate(s, fill, count))
        share = processed / raw
        progress(f"[{backend}] pipeline: {processed:,.0f} readings/s ({share:.0%} of raw)")
        figures = BackendFigures(raw, processed)
        for rate in rates:
            progress(f"[{backend}] latency at {rate:,.0f} readings/s for {seconds:.0f} s…")
            figures.latency_ms[f"{rate:.0f}"] = latency_at(s, live, payloads, rate, seconds)
        results[backend] = figures
    return {
        "count": count,
        "partitions": 6,
        "backends": {
            b: {
                "readings_per_s": round(f.readings_per_s),
                "raw_readings_per_s": round(f.raw_readings_per_s),
                "ratio": round(f.ratio, 3),
                "latency_ms": {
                    r: {k: round(v, 1) for k, v in p.items()} for r, p in f.latency_ms.items()
                },
            }
            for b, f in results.items()
        },
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def format_table(figures: dict[str, object]) -> str:
    """The benchmark's figures as a plain-text table."""
    backends: dict = figures["backends"]  # type: ignore[assignment]
    rates = sorted({r for b in backends.values() for r in b["latency_ms"]}, key=float)
    head = ["backend", "raw (readings/s)", "pipeline (readings/s)", "pipeline/raw"]
    head += [f"p50/p95/p99 @ {float(r):,.0f}/s (ms)" for r in rates]
    rows = [head]
    for name, b in backends.items():
        row = [name, f"{b['raw_readings_per_s']:,}", f"{b['readings_per_s']:,}"]
        row.append(f"{b['ratio']:.0%}")
        for r in rates:
            p = b["latency_ms"].get(r)
            row.append("–" if p is None else f"{p['p50']:.0f} / {p['p95']:.0f} / {p['p99']:.0f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        f"{figures['count']:,} readings, {figures['partitions']} partitions; "
        f"peak memory {figures['peak_rss_mb']:,.0f} MB"
    )
    return "\n".join(lines)
