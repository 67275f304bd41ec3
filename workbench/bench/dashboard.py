"""``workbench bench dashboard``: how fresh the live dashboard is, and how responsive, under load.

For each offered rate, on fresh topics: the simulator publishes to the real broker, one detection
worker handles it, a fresh Voilà server serves the dashboard, headless Chromium opens it with an
analyst's token and follows one device. It records, for every point that reaches the trend chart,
how old its reading was (produce → on screen), then moves the threshold slider, applies it to
the workers, confirms, and times the round trip until the page shows the new settings in force.
"""

from __future__ import annotations

import multiprocessing
import re
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workbench.bench import dashboard_page as dash
from workbench.bench.browser import chromium
from workbench.bench.scale import WorkerFigures, simulator_process, wait_settled
from workbench.config import Settings
from workbench.ports import free_port
from workbench.security.manage import create_token, revoke_token
from workbench.simulator.fleet import Fleet
from workbench.streams.worker import TOPIC_PREFIX_ENV, WorkerTopics
from workbench.supervisor import Supervisor
from workbench.voila import start_dashboard, stop_dashboard

RESPONSIVE_MS = 200.0
"""Responsive: 95 % of slider round trips are faster than this."""
ROUND_TRIPS = 20


def _pct(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if len(values) else None


def _measure_rate(
    settings: Settings, rate: float, seconds: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    devices = max(200, round(rate / 5))  # every device reports about every 5 s … 0.2 s
    device = next(
        d.device_id for d in Fleet(devices, seed=1).devices if d.device_type == "thermostat"
    )
    prefix = f"workbench.bench.{uuid.uuid4().hex[:8]}."
    topics = WorkerTopics.prefixed(prefix)
    group = f"bench-dashboard-{uuid.uuid4().hex[:6]}"
    topics.ensure(settings, groups=(group,))
    port = free_port()
    log = settings.data_dir / "bench-voila.log"
    token, record = create_token(settings, "bench dashboard", "analyst", "workbench bench")
    server = start_dashboard(settings, port=port, log=log, env={TOPIC_PREFIX_ENV: prefix})
    figures = WorkerFigures(settings, topics.metrics)
    spawn = multiprocessing.get_context("spawn")
    sim = None
    with tempfile.TemporaryDirectory(prefix="workbench-bench-dashboard-") as tmp:
        supervisor = Supervisor(settings, group, Path(tmp), workers=1, topics_prefix=prefix)
        try:
            wait_settled(supervisor, figures)
            # The devices run in their own process (librdkafka producer): not the page's cost.
            sim = spawn.Process(
                target=simulator_process, args=(settings, topics.readings, rate, 600)
            )
            sim.start()
            with chromium() as context:
                page = dash.open_dashboard(context, f"http://127.0.0.1:{port}/?token={token}")
                dash.select_device(page, device)
                time.sleep(2)  # let the consumer settle on its partition
                dash.watch_latency(page)
                progress(f"{rate:,.0f} readings/s: following {device} for {seconds:.0f} s")
                time.sleep(seconds)
                latencies = dash.latencies_ms(page)
                throughput = page.locator(".wb-stat", has_text="throughput").inner_text()
                pipeline = page.locator(".wb-stat", has_text="latency").inner_text()
                trips, lost = [], 0
                for i in range(ROUND_TRIPS):
                    try:
                        trips.append(dash.set_threshold(page, 0.11 + 0.01 * (i % 5)) * 1000)
                    except PlaywrightTimeout:  # the page did not show the change in time
                        lost += 1
        finally:
            if sim is not None:
                sim.terminate()
                sim.join(30)
            stop_dashboard(server)
            supervisor.stop()
            figures.close()
            revoke_token(settings, record["token_id"], "workbench bench")
    kernel_rate = re.search(r"([\d,]+) msgs/s", throughput)
    processed = re.findall(r"(\d[\d,]*) ms", pipeline)
    return {
        "offered_readings_per_s": rate,
        "devices": devices,
        "kernel_msgs_per_s": int(kernel_rate.group(1).replace(",", "")) if kernel_rate else None,
        "produce_to_processed_ms_p50_p95": [int(v.replace(",", "")) for v in processed] or None,
        "points": len(latencies),
        "on_screen_ms_p50": _pct(latencies, 50),
        "on_screen_ms_p95": _pct(latencies, 95),
        "slider_round_trip_ms_p50": _pct(trips, 50),
        "slider_round_trip_ms_p95": _pct(trips, 95),
        "slider_round_trip_ms_max": round(max(trips), 1) if trips else None,
        "slider_round_trips_timed_out": lost,
        "responsive": bool(trips) and not lost and _pct(trips, 95) < RESPONSIVE_MS,
    }


def run_dashboard_bench(
    settings: Settings,
    rates: Sequence[float] = (1_000, 10_000),
    seconds: float = 20.0,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Figures per offered rate, plus the highest rate that stayed responsive."""
    results = [_measure_rate(settings, rate, seconds, progress) for rate in rates]
    responsive = [r["offered_readings_per_s"] for r in results if r["responsive"]]
    return {
        "rates": results,
        "highest_responsive_readings_per_s": max(responsive, default=None),
        "responsive_below_ms": RESPONSIVE_MS,
    }


def format_table(figures: dict[str, Any]) -> str:
    """The figures as a table with units."""
    rows = [
        (
            "offered/s",
            "kernel msgs/s",
            "points",
            "on screen p50 ms",
            "p95 ms",
            "slider p50 ms",
            "p95 ms",
            "max ms",
            "responsive",
        )
    ]
    for r in figures["rates"]:
        rows.append(
            (
                f"{r['offered_readings_per_s']:,.0f}",
                "–" if r["kernel_msgs_per_s"] is None else f"{r['kernel_msgs_per_s']:,}",
                f"{r['points']:,}",
                f"{r['on_screen_ms_p50']}",
                f"{r['on_screen_ms_p95']}",
                f"{r['slider_round_trip_ms_p50']}",
                f"{r['slider_round_trip_ms_p95']}",
                f"{r['slider_round_trip_ms_max']}",
                ("yes" if r["responsive"] else "no")
                + (
                    f" ({r['slider_round_trips_timed_out']} > 5 s)"
                    if r.get("slider_round_trips_timed_out")
                    else ""
                ),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    best = figures["highest_responsive_readings_per_s"]
    lines.append(
        "highest rate with slider round trips under "
        f"{figures['responsive_below_ms']:.0f} ms (p95): "
        + ("none" if best is None else f"{best:,.0f} readings/s")
    )
    return "\n".join(lines)
