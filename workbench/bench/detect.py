"""``workbench bench detect``: readings/s of each detector and the ensemble, and their memory.

Readings come from the simulator (a fleet of ``devices``, every device reporting each round), are
decoded once up front, and are fed to each detector in batches of several sizes after a warm-up
pass that fills per-device windows and trains the fleet models; state size is measured at the end.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from workbench.bench.ingest import peak_rss_mb
from workbench.models import (
    CounterDetector,
    DensityDetector,
    DropoutDetector,
    EnsembleDetector,
    EwmaDetector,
    ForestDetector,
    LocationJumpDetector,
    NoiseBurstDetector,
    NoveltyDetector,
    RobustZDetector,
    ShiftDetector,
    StuckDetector,
)
from workbench.schema import Reading

DETECTORS: dict[str, Callable[[], object]] = {
    "robust_z": RobustZDetector,
    "ewma": EwmaDetector,
    "stuck": StuckDetector,
    "dropout": DropoutDetector,
    "shift": ShiftDetector,
    "noise": NoiseBurstDetector,
    "location": LocationJumpDetector,
    "counter": CounterDetector,
    "forest": ForestDetector,
    "density": DensityDetector,
    "novelty": NoveltyDetector,
    "ensemble": EnsembleDetector,
}
WARM_ROUNDS = 25
"""Readings per device fed before timing (windows filled past ``min_history``, models trained)."""
TIMED_ROUNDS = 4


def _readings(devices: int, rounds: int, seed: int) -> list[Reading]:
    from workbench.simulator import simulate

    start = datetime(2024, 1, 15, 8, tzinfo=UTC)
    return [
        r for r, _ in simulate(devices, devices / 5.0, devices * rounds, seed=seed, start=start)
    ]


def _feed(detector: object, readings: Sequence[Reading], batch: int) -> float:
    """Seconds to push ``readings`` through ``detector`` in batches of ``batch``."""
    process = detector.process_batch  # type: ignore[attr-defined]
    began = time.perf_counter()
    for i in range(0, len(readings), batch):
        process(readings[i : i + batch])
    return time.perf_counter() - began


def run_detect_bench(
    batch_sizes: Sequence[int] = (100, 1000, 10_000),
    devices: int = 10_000,
    progress: Callable[[str], None] = print,
    seed: int = 1,
) -> dict:
    """Readings/s per detector and batch size, state MB and peak memory with ``devices`` devices."""
    progress(f"simulating {devices:,} devices × {WARM_ROUNDS + TIMED_ROUNDS} readings …")
    readings = _readings(devices, WARM_ROUNDS + TIMED_ROUNDS, seed)
    warm, timed = readings[: devices * WARM_ROUNDS], readings[devices * WARM_ROUNDS :]
    figures: dict = {"devices": devices, "readings_timed": len(timed), "detectors": {}}
    for name, make in DETECTORS.items():
        detector = make()
        tracemalloc.start()  # slows Python down: memory is traced on the warm-up pass only
        _feed(detector, warm, 10_000)
        wait = getattr(detector, "wait", None)
        if wait is not None:
            wait()
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rates = {}
        for batch in batch_sizes:
            rates[str(batch)] = len(timed) / _feed(detector, timed, batch)
        figures["detectors"][name] = {
            "readings_per_s": rates,
            "state_mb": detector.state_bytes / 1e6,  # type: ignore[attr-defined]
            "peak_traced_mb": peak / 1e6,
        }
        progress(f"{name}: " + ", ".join(f"{b}: {r:,.0f}/s" for b, r in rates.items()))
    figures["peak_rss_mb"] = peak_rss_mb()
    return figures


def format_table(figures: dict) -> str:
    """The figures as a text table: one row per detector, readings/s per batch size."""
    rows = figures["detectors"]
    sizes = list(next(iter(rows.values()))["readings_per_s"]) if rows else []
    head = f"{'detector':<10}" + "".join(f"{'batch ' + s:>14}" for s in sizes)
    head += f"{'state MB':>10}{'peak MB':>10}"
    lines = [f"{figures['devices']:,} devices, readings/s by batch size", head]
    for name, row in rows.items():
        rates = "".join(f"{row['readings_per_s'][s]:>14,.0f}" for s in sizes)
        lines.append(f"{name:<10}{rates}{row['state_mb']:>10.1f}{row['peak_traced_mb']:>10.1f}")
    lines.append(f"process peak RSS: {figures['peak_rss_mb']:,.0f} MB")
    return "\n".join(lines)
