"""Dashboard settings: auto-refresh, refresh interval, CSV export (a browser download), clear."""

from __future__ import annotations

import base64
import html
from collections.abc import Callable
from datetime import UTC, datetime

import ipywidgets as widgets

from workbench.ui.export import alerts_csv, readings_csv
from workbench.ui.session import LiveSession
from workbench.ui.style import card

EXPORT_ROWS = 50_000
"""Most recent readings of the followed device put in one export (the download travels through
the page)."""


def download_link(name: str, text: str, label: str) -> str:
    """An anchor that downloads ``text`` as ``name`` (a data URI: no server route needed)."""
    data = base64.b64encode(text.encode()).decode()
    return (
        f'<a class="wb-download" download="{html.escape(name)}" '
        f'href="data:text/csv;base64,{data}">{html.escape(label)}</a>'
    )


class ControlsPanel:
    """Refresh on/off and interval (1–10 s), export to CSV, clear the views' data."""

    def __init__(self, session: LiveSession, on_clear: Callable[[], None]) -> None:
        self.session = session
        self.auto = widgets.Checkbox(value=True, description="auto-refresh", indent=False)
        self.interval = widgets.IntSlider(
            value=2, min=1, max=10, description="refresh (s)", continuous_update=False
        )
        self.export_button = widgets.Button(description="Export CSV", icon="download")
        self.export_button.add_class("wb-export")
        self.clear_button = widgets.Button(description="Clear data", icon="trash")
        self.links = widgets.HTML()
        self.links.add_class("wb-links")
        self.export_button.on_click(lambda _b: self.export())
        self.clear_button.on_click(lambda _b: (session.clear(), on_clear(), self._cleared()))
        row = widgets.HBox(
            [self.auto, self.interval, self.export_button, self.clear_button],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center", width="100%"),
        )
        self.widget = card("Dashboard", row, self.links)

    def export(self) -> None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        readings = list(self.session.device_readings)[-EXPORT_ROWS:]
        alerts = list(self.session.alerts.by_id.values())
        self.links.value = (
            download_link(
                f"readings-{stamp}.csv",
                readings_csv(readings, self.session.profiles),
                f"readings-{stamp}.csv ({len(readings):,} rows)",
            )
            + " · "
            + download_link(
                f"alerts-{stamp}.csv",
                alerts_csv(alerts),
                f"alerts-{stamp}.csv ({len(alerts):,} rows)",
            )
        )

    def _cleared(self) -> None:
        self.links.value = '<span class="wb-note">cleared the readings and the alerts</span>'
