"""``workbench bench viewers``: what open dashboard pages cost, now that views are light.

On the real broker: one detection worker, a simulator process offering ``rate`` readings/s,
and a Voilà server on fresh topics. First the pipeline runs with no page open; then ``viewers``
headless Chromium pages open the dashboard (each page its own kernel) and stay for ``seconds``.
It reports the CPU of each viewer's kernel (share of one core), the pipeline's produce →
processed p99 with and without the pages (the worker's own figures, median of its per-second
p99s), how old a type-mean point is when it reaches a page's trend chart (p95: from its data
time, which includes a simulator falling behind its schedule, and from the page's kernel hearing
of it, the view's own part), and the cores the browsers, the dashboard server and the worker used
meanwhile: on a small machine the browsers compete with the worker (at the lowest priority they
starve, their pages' heartbeats stop and the kernels stop following, so they are not niced).

Targets (this project's issue 12): a viewer's kernel uses at most 5 % of a core at 10,000
readings/s; 10 open viewers leave the pipeline's p99 within 10 % of its p99 with none.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from workbench.bench import dashboard_page as dash
from workbench.bench.browser import chromium
from workbench.bench.scale import WorkerFigures, simulator_process, wait_settled
from workbench.config import Settings
from workbench.ports import free_port
from workbench.security.manage import create_token
from workbench.streams.worker import TOPIC_PREFIX_ENV, WorkerTopics
from workbench.supervisor import Supervisor
from workbench.voila import start_dashboard, stop_dashboard

KERNEL_CPU_TARGET = 0.05
"""Most of a core one viewer's kernel may use (at 10,000 readings/s)."""
CATCH_UP_S = 10.0
"""Pages open this long before their kernels' CPU is measured."""
P99_TARGET = 0.10
"""How much 10 viewers may raise the pipeline's p99 (a fraction of its p99 with none)."""


def _p99s(figures: WorkerFigures, names: list[str], seconds: float) -> list[float]:
    """The worker's p99 once a second for ``seconds``."""
    out = []
    for _ in range(int(seconds)):
        time.sleep(1.0)
        for f in figures.of(names):
            p99 = f["pipeline"]["latency_ms_p99"]
            if p99 is not None:
                out.append(p99)
    return out


def _kernels(voila: Any) -> list[psutil.Process]:
    """The Voilà server's kernel processes."""
    kids = psutil.Process(voila.pid).children(recursive=True)
    found = []
    for p in kids:
        with contextlib.suppress(psutil.Error):
            if "ipykernel" in " ".join(p.cmdline()):
                found.append(p)
    return found


def _browsers() -> list[psutil.Process]:
    """This process's Chromium processes (Playwright's browser and its renderers)."""
    found = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "chrom" in p.name().lower():
                found.append(p)
    return found


def _cores(processes: list[psutil.Process]) -> list[float]:
    """Each process's CPU since the last call, as a share of one core (0 for one gone)."""
    shares = []
    for p in processes:
        try:
            shares.append(p.cpu_percent(None) / 100)
        except psutil.Error:
            shares.append(0.0)
    return shares


def run_viewers_bench(
    settings: Settings,
    viewers: int = 10,
    rate: float = 10_000.0,
    seconds: float = 30.0,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark; the figures as one JSON-able dict, with the targets' verdicts."""
    prefix = f"workbench.bench.{uuid.uuid4().hex[:8]}."
    topics = WorkerTopics.prefixed(prefix)
    group = f"bench-viewers-{uuid.uuid4().hex[:6]}"
    topics.ensure(settings, groups=(group,))
    spawn = multiprocessing.get_context("spawn")
    figures = WorkerFigures(settings, topics.metrics)
    with tempfile.TemporaryDirectory(prefix="workbench-bench-viewers-") as tmp:
        supervisor = Supervisor(settings, group, Path(tmp), workers=1, topics_prefix=prefix)
        token, _ = create_token(settings, "bench viewers", "viewer", "workbench bench viewers")
        port = free_port()
        env = {
            TOPIC_PREFIX_ENV: prefix,
            "WORKBENCH_DASHBOARD_PAGES_PER_TOKEN": str(viewers + 1),
            "WORKBENCH_DASHBOARD_PAGES_MAX": str(viewers + 5),
        }
        voila = start_dashboard(settings, port=port, log=Path(tmp) / "voila.log", env=env)
        sim = None
        try:
            names = wait_settled(supervisor, figures)
            sim = spawn.Process(
                target=simulator_process, args=(settings, topics.readings, rate, 3 * seconds + 300)
            )
            sim.start()
            progress(f"{rate:,.0f} readings/s, no page open: {seconds:.0f} s…")
            time.sleep(5)  # the worker at speed
            alone = _p99s(figures, names, seconds)
            progress(f"opening {viewers} dashboard pages…")
            with chromium(foreground=True) as context:
                url = f"http://127.0.0.1:{port}/?token={token}"
                pages = [dash.open_dashboard(context, url) for _ in range(viewers)]
                for page in pages:
                    page.wait_for_function(
                        "() => /[1-9][\\d,]* msgs\\/s/.test(document.body.innerText)",
                        timeout=120_000,
                    )
                    dash.watch_latency(page)
                # A new page's kernel first reads the compacted topics (every device's state,
                # the alerts so far): measure the steady state after that.
                time.sleep(CATCH_UP_S)
                kernels = _kernels(voila)
                browsers = _browsers()
                server = psutil.Process(voila.pid)
                _cores([*kernels, *browsers, server])
                supervisor.cpu_shares()
                progress(f"{len(kernels)} kernels for {viewers} pages: {seconds:.0f} s…")
                watched = _p99s(figures, names, seconds)
                cpu = _cores(kernels)
                others = {
                    "browsers": round(sum(_cores(browsers)), 2),
                    "dashboard_server": round(sum(_cores([server])), 2),
                    "worker": round(sum(supervisor.cpu_shares().values()), 2),
                }
                on_screen = [ms for page in pages for ms in dash.latencies_ms(page)]
                view = [ms for page in pages for ms in dash.view_latencies_ms(page)]
        finally:
            if sim is not None:
                sim.terminate()
                sim.join(30)
            stop_dashboard(voila)
            supervisor.stop()
            figures.close()
    p99_alone = statistics.median(alone) if alone else None
    p99_watched = statistics.median(watched) if watched else None
    raised = None if not (p99_alone and p99_watched) else p99_watched / p99_alone - 1
    worst_cpu = max(cpu, default=None)
    checks = {
        "kernel_cpu_share": {
            "target": KERNEL_CPU_TARGET,
            "met": worst_cpu is not None and worst_cpu <= KERNEL_CPU_TARGET,
        },
        "p99_raised_by": {
            "target": P99_TARGET,
            "met": raised is not None and raised <= P99_TARGET,
        },
    }
    on_screen.sort()
    view.sort()
    return {
        "viewers": viewers,
        "offered_readings_per_s": rate,
        "seconds": seconds,
        "kernel_cpu_share": {
            "mean": round(statistics.mean(cpu), 3) if cpu else None,
            "max": None if worst_cpu is None else round(worst_cpu, 3),
        },
        "pipeline_p99_ms": {
            "without_viewers": None if p99_alone is None else round(p99_alone, 1),
            "with_viewers": None if p99_watched is None else round(p99_watched, 1),
            "raised_by": None if raised is None else round(raised, 3),
        },
        "on_screen_ms_p95": _p95(on_screen),
        "on_screen_points": len(on_screen),
        "kernel_to_screen_ms_p95": _p95(view),
        "cpu_cores_while_watched": others,
        "host_cpus": os.cpu_count(),
        "targets": checks,
        "ok": all(c["met"] for c in checks.values()),
    }


def _p95(ordered: list[float]) -> float | None:
    return round(ordered[int(0.95 * (len(ordered) - 1))], 1) if ordered else None


def format_report(figures: dict[str, Any]) -> str:
    """The figures as lines with units, then the targets."""
    cpu, p99 = figures["kernel_cpu_share"], figures["pipeline_p99_ms"]
    others = figures["cpu_cores_while_watched"]

    def share(x: float | None) -> str:
        return "–" if x is None else f"{100 * x:.1f} % of a core"

    def ms(x: float | None) -> str:
        return "–" if x is None else f"{x:,.0f} ms"

    lines = [
        f"{figures['viewers']} viewers at {figures['offered_readings_per_s']:,.0f} readings/s, "
        f"{figures['seconds']:.0f} s each way",
        f"viewer kernel CPU: mean {share(cpu['mean'])}, max {share(cpu['max'])}",
        f"pipeline p99: {ms(p99['without_viewers'])} without viewers, "
        f"{ms(p99['with_viewers'])} with"
        + ("" if p99["raised_by"] is None else f" ({100 * p99['raised_by']:+.1f} %)"),
        f"on screen p95: {ms(figures['on_screen_ms_p95'])} from the data's time, "
        f"{ms(figures['kernel_to_screen_ms_p95'])} from the kernel hearing of it "
        f"({figures['on_screen_points']:,} points)",
        "CPU while the pages were open (cores): "
        + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in others.items()),
    ]
    for name, check in figures["targets"].items():
        verdict = "met" if check["met"] else "NOT met"
        lines.append(f"target {name.replace('_', ' ')} ≤ {check['target']:.0%}: {verdict}")
    return "\n".join(lines)
