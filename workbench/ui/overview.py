"""Overview panel: connection status, throughput, totals, lag, latency and last update."""

from __future__ import annotations

import html
import time

import ipywidgets as widgets

from workbench.ui.session import LiveSession
from workbench.ui.style import card


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


class OverviewPanel:
    """Pipeline figures as tiles, each with its unit."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.stats = widgets.HTML()
        self.widget = card("Overview", self.stats)
        self.refresh()

    def refresh(self) -> None:
        m = self.session.source.metrics.snapshot()
        lag = "–" if m.consumer_lag is None else f"{m.consumer_lag:,} msgs"
        age = "never" if m.last_update is None else f"{time.time() - m.last_update:,.1f} s ago"
        status = m.status if m.last_error is None else f"{m.status}: {m.last_error}"
        if not self.session.started:
            status = "waiting for a viewer" if m.total == 0 else "stopped"
        colour = {"consuming": "#2ca02c", "starting": "#777"}.get(m.status, "#d62728")
        tiles = [
            ("connection", f'<span style="color:{colour}">{html.escape(status)}</span>'),
            ("throughput", f"{m.messages_per_s:,.0f} msgs/s"),
            ("total", f"{m.total:,} msgs"),
            ("rejected (malformed)", f"{m.dead_lettered:,} msgs"),
            ("consumer lag", lag),
            ("latency p50 / p95", f"{_ms(m.latency_ms_p50)} / {_ms(m.latency_ms_p95)}"),
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
