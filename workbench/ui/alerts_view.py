"""Live alert feed in severity colours; alert history filterable by severity, kind and device."""

from __future__ import annotations

import html

import ipywidgets as widgets

from workbench.alerts.model import SEVERITIES, Alert
from workbench.ui.session import AlertLog
from workbench.ui.style import badge, card, full_width, table

FEED_ROWS = 12
HISTORY_ROWS = 200
ANY = "any"


def _when(alert: Alert) -> str:
    return alert.first_seen.strftime("%H:%M:%S")


class AlertFeedPanel:
    """The latest alert changes, newest first."""

    def __init__(self, log: AlertLog) -> None:
        self.log = log
        self.feed = widgets.HTML()
        self.feed.add_class("wb-alert-feed")
        self.widget = card("Live alerts", self.feed)

    def refresh(self) -> None:
        latest: dict[str, Alert] = {}
        for alert in reversed(self.log.feed):  # one line per alert, in its newest state
            if alert.alert_id not in latest:
                latest[alert.alert_id] = alert
            if len(latest) == FEED_ROWS:
                break
        if not latest:
            self.feed.value = '<span class="wb-note">no alerts yet</span>'
            return
        self.feed.value = "".join(
            f'<div class="wb-alert" data-severity="{html.escape(a.severity)}">{badge(a.severity)} '
            f"<b>{html.escape(a.device_id)}</b> {html.escape(a.kind)} · {_when(a)} UTC · "
            f'{html.escape(a.status)}<br><span class="wb-note">{html.escape(a.explanation)}'
            "</span></div>"
            for a in latest.values()
        )


class AlertHistoryPanel:
    """Every alert this view has seen, filterable; the newest first."""

    def __init__(self, log: AlertLog) -> None:
        self.log = log
        self.severity = widgets.Dropdown(
            options=[ANY, *reversed(SEVERITIES)], description="severity"
        )
        self.kind = widgets.Dropdown(options=[ANY], description="kind")
        self.device = widgets.Text(placeholder="any device", description="device")
        self.table = widgets.HTML()
        self.table.add_class("wb-alert-history")
        for w in (self.severity, self.kind, self.device):
            full_width(w)
            w.observe(lambda _c: self.refresh(), "value")
        filters = widgets.HBox(
            [self.severity, self.kind, self.device],
            layout=widgets.Layout(flex_flow="row wrap", width="100%"),
        )
        self.widget = card("Alert history", filters, self.table)

    def matching(self) -> list[Alert]:
        """Alerts passing the filters, newest first."""
        device = self.device.value.strip()
        return [
            a
            for a in reversed(self.log.by_id.values())
            if (self.severity.value == ANY or a.severity == self.severity.value)
            and (self.kind.value == ANY or a.kind == self.kind.value)
            and (not device or device in a.device_id)
        ]

    def refresh(self) -> None:
        kinds = [ANY, *sorted({a.kind for a in self.log.by_id.values()})]
        if list(self.kind.options) != kinds:
            self.kind.options = kinds
        alerts = self.matching()
        rows = [
            [
                badge(a.severity),
                html.escape(a.kind),
                html.escape(a.device_id),
                html.escape(a.metric or "–"),
                f"{a.first_seen:%H:%M:%S}",
                f"{(a.last_seen - a.first_seen).total_seconds():,.0f} s",
                f"{a.score:.2f}",
                html.escape(a.status),
            ]
            for a in alerts[:HISTORY_ROWS]
        ]
        header = [
            "severity",
            "kind",
            "device",
            "metric",
            "first seen (UTC)",
            "duration",
            "score",
            "status",
        ]
        shown = f"{len(rows):,} of {len(alerts):,} matching alerts ({len(self.log.by_id):,} seen)"
        self.table.value = f'<span class="wb-note">{shown}</span>' + table(header, rows)
