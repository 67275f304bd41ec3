"""Live pipeline metrics: throughput, totals, dead letters, consumer lag, end-to-end latency.

Updated once per batch (never per message) so keeping them costs nothing measurable. Latency is
record timestamp (set by the producer) → batch handled downstream, sampled from each batch.
Written on the source's loop and read from any thread (dashboard, detection thread, status lines),
so every compound update and read holds one lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

RATE_WINDOW_S = 5.0
LATENCY_SAMPLES = 8192
SAMPLES_PER_BATCH = 64


@dataclass(frozen=True)
class MetricsSnapshot:
    """Metrics at one instant; every figure carries its unit in its name."""

    status: str
    total: int
    dead_lettered: int
    messages_per_s: float
    consumer_lag: int | None
    """Messages not yet read, over the partitions held."""
    last_update: float | None
    """Unix time (s) of the last batch handled."""
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    latency_ms_p99: float | None
    batches: int
    errors: int
    last_error: str | None
    partition_lag: list[tuple[int, int]] | None = None
    """(partition, messages not yet read) of each partition held, in partition order."""

    def as_dict(self) -> dict[str, object]:
        """Plain dict (for JSON, tables and widgets)."""
        return dict(self.__dict__)

    def line(self) -> str:
        """One human line for a terminal."""

        def ms(v: float | None) -> str:
            return "–" if v is None else f"{v:,.0f} ms"

        lag = "–" if self.consumer_lag is None else f"{self.consumer_lag:,} msgs"
        age = (
            "never" if self.last_update is None else f"{time.time() - self.last_update:,.1f} s ago"
        )
        return (
            f"{self.status} · {self.messages_per_s:,.0f} msgs/s · total {self.total:,} msgs · "
            f"dead-lettered {self.dead_lettered:,} msgs · lag {lag} · latency p50 "
            f"{ms(self.latency_ms_p50)} p99 {ms(self.latency_ms_p99)} · last update {age}"
        )


class PipelineMetrics:
    """Accumulates per-batch figures; safe to write and read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status = "starting"
        self.total = 0
        self.dead_lettered = 0
        self.batches = 0
        self.errors = 0
        self.last_error: str | None = None
        self.partition_lag: dict[int, int] | None = None
        """Messages not yet read per partition held (None: unknown)."""
        self.last_update: float | None = None
        self._window: deque[tuple[float, int]] = deque()
        self._latencies = np.full(LATENCY_SAMPLES, np.nan)
        self._cursor = 0

    def record_batch(
        self, handled: int, dead_lettered: int, timestamps_ms: list[int], done_at: float
    ) -> None:
        """Count one handled batch; ``timestamps_ms`` are the readings' record timestamps."""
        sample = None
        if timestamps_ms:
            step = max(1, len(timestamps_ms) // SAMPLES_PER_BATCH)
            sample = done_at * 1000.0 - np.asarray(timestamps_ms[::step], dtype=np.float64)
        with self._lock:
            self.total += handled
            self.dead_lettered += dead_lettered
            self.batches += 1
            self.last_update = done_at
            self.status = "consuming"
            self._window.append((done_at, handled + dead_lettered))
            if sample is not None:
                idx = (self._cursor + np.arange(sample.size)) % LATENCY_SAMPLES
                self._latencies[idx] = sample
                self._cursor = int((self._cursor + sample.size) % LATENCY_SAMPLES)

    def record_error(self, error: BaseException, status: str = "reconnecting") -> None:
        """Count a failure the pipeline rode out."""
        with self._lock:
            self.errors += 1
            self.last_error = f"{type(error).__name__}: {error}"
            self.status = status

    def reset_latency(self) -> None:
        """Forget latency samples (e.g. between benchmark phases)."""
        with self._lock:
            self._latencies[:] = np.nan
            self._cursor = 0

    def rate(self, now: float | None = None) -> float:
        """Messages handled per second over the last few seconds."""
        with self._lock:
            return self._rate(time.time() if now is None else now)

    def _rate(self, now: float) -> float:
        while self._window and self._window[0][0] < now - RATE_WINDOW_S:
            self._window.popleft()
        if not self._window:
            return 0.0
        span = max(now - self._window[0][0], 1.0)
        return sum(n for _, n in self._window) / span

    def snapshot(self) -> MetricsSnapshot:
        """The current figures, all of one instant."""
        with self._lock:
            latencies = self._latencies.copy()
            lag = self.partition_lag
            figures = {
                "status": self.status,
                "total": self.total,
                "dead_lettered": self.dead_lettered,
                "messages_per_s": self._rate(time.time()),
                "consumer_lag": None if lag is None else sum(lag.values()),
                "partition_lag": None if lag is None else sorted(lag.items()),
                "last_update": self.last_update,
                "batches": self.batches,
                "errors": self.errors,
                "last_error": self.last_error,
            }
        lat = latencies[~np.isnan(latencies)]
        p50, p95, p99 = (
            (float(v) for v in np.percentile(lat, [50, 95, 99])) if lat.size else (None,) * 3
        )
        return MetricsSnapshot(
            **figures, latency_ms_p50=p50, latency_ms_p95=p95, latency_ms_p99=p99
        )
