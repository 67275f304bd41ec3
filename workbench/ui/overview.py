"""Overview panel: the detection workers' figures, summed over the workers, each with its unit."""

from __future__ import annotations

import html
import time

import ipywidgets as widgets

from workbench.streams.worker import live_workers, partitions_line
from workbench.ui.session import LiveSession
from workbench.ui.style import card

EVENTS_SHOWN = 5
"""Latest supervisor events listed (starts, exits, restarts, scaling)."""


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


class OverviewPanel:
    """Throughput, totals, lag and latency of the workers, as tiles; a line per worker."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.stats = widgets.HTML()
        self.workers = widgets.HTML()
        self.workers.add_class("wb-workers")
        self.widget = card("Overview", self.stats, self.workers)
        self.refresh()

    def refresh(self) -> None:
        workers = self.session.live_workers()
        figures = [f["pipeline"] for f in workers.values()]
        lags = [p["consumer_lag"] for p in figures if p["consumer_lag"] is not None]
        p50s = [p["latency_ms_p50"] for p in figures if p["latency_ms_p50"] is not None]
        p95s = [p["latency_ms_p95"] for p in figures if p["latency_ms_p95"] is not None]
        updates = [p["last_update"] for p in figures if p["last_update"] is not None]
        if not self.session.started:
            status, colour = "waiting for a viewer", "#777"
        elif not workers:
            status, colour = "no detection worker publishing figures", "#d62728"
        else:
            errors = [p["last_error"] for p in figures if p["status"] != "consuming"]
            status = f"{len(workers)} worker{'s' if len(workers) != 1 else ''} consuming"
            status += f" ({len(errors)} reconnecting: {errors[0]})" if errors else ""
            colour = "#2ca02c" if not errors else "#d62728"
        age = "never" if not updates else f"{time.time() - max(updates):,.1f} s ago"
        tiles = [
            ("connection", f'<span style="color:{colour}">{html.escape(status)}</span>'),
            ("throughput", f"{sum(p['messages_per_s'] for p in figures):,.0f} msgs/s"),
            ("total", f"{sum(p['total'] for p in figures):,} msgs"),
            ("rejected (malformed)", f"{sum(p['dead_lettered'] for p in figures):,} msgs"),
            ("consumer lag", f"{sum(lags):,} msgs" if lags else "–"),
            (
                "latency p50 / p95",
                f"{_ms(max(p50s, default=None))} / {_ms(max(p95s, default=None))}",
            ),
            ("last update", age),
        ]
        self.stats.value = (
            '<div class="wb-stats">'
            + "".join(
                f'<div class="wb-stat"><div class="k">{k}</div><div class="v">{v}</div></div>'
                for k, v in tiles
            )
            + "</div>"
        )
        self.workers.value = self._supervision() + "".join(
            f'<div class="wb-note">{html.escape(name)}: partitions '
            f"{partitions_line(f['partitions'], f['pipeline'].get('partition_lag'))} · "
            f"{f['devices']:,} devices · "
            f"{f['pipeline']['messages_per_s']:,.0f} msgs/s · settings v{f['settings_version']}"
            "</div>"
            for name, f in sorted(workers.items())
        )

    def _supervision(self) -> str:
        """A line per supervised group (``workbench up``): its workers, restarts and scaling,
        then its latest events."""
        out = []
        for group, report in sorted(live_workers(self.session.supervisors).items()):
            workers = report["workers"]
            running = sum(w["state"] == "running" for w in workers)
            restarts = sum(w["restarts"] for w in workers)
            scaling = report.get("scaling")
            how = f"auto-scaling {scaling['min']}–{scaling['max']}" if scaling else "fixed"
            out.append(
                f'<div class="wb-note">supervisor of {html.escape(group)}: {running} of '
                f"{len(workers)} workers running ({how}) · {restarts} "
                f"restart{'' if restarts == 1 else 's'}</div>"
            )
            out += [
                f'<div class="wb-note wb-event">{html.escape(e)}</div>'
                for e in report["events"][-EVENTS_SHOWN:]
            ]
        return "".join(out)
