"""Live alert feed in severity colours, with acknowledge and clear for analysts; alert history
filterable by severity, kind and device."""

from __future__ import annotations

import asyncio
import html

import ipywidgets as widgets

from workbench.alerts.model import SEVERITIES, Alert
from workbench.ui.session import LiveSession
from workbench.ui.style import badge, card, full_width, table

FEED_ROWS = 12
HISTORY_ROWS = 200
ANY = "any"


def _when(alert: Alert) -> str:
    return alert.first_seen.strftime("%H:%M:%S")


def _handled(lifecycle: dict[str, dict], alert_id: str, before: str = "") -> str:
    """Who acknowledged or cleared an alert ("acknowledged by ana"), as markup; empty while it
    is active (or not stored)."""
    state = lifecycle.get(alert_id)
    if state is None or state["state"] == "active":
        return ""
    by = state.get(f"{state['state']}_by") or ""
    return (
        f'{before}<span class="wb-lifecycle">{html.escape(state["state"])} by '
        f"{html.escape(by.split(' (')[0])}</span>"
    )


class AlertFeedPanel:
    """The latest alert changes, newest first, each with its lifecycle (who acknowledged or
    cleared it); analysts and admins acknowledge or clear the picked one for everyone."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.log = session.alerts
        self.feed = widgets.HTML()
        self.feed.add_class("wb-alert-feed")
        self.pick = widgets.Dropdown(description="alert", options=[])
        self.pick.add_class("wb-alert-pick")
        self.ack = widgets.Button(description="Acknowledge", icon="check")
        self.ack.add_class("wb-ack")
        self.clear = widgets.Button(description="Clear", icon="times")
        self.clear.add_class("wb-clear")
        self.said = widgets.HTML()
        self.said.add_class("wb-ack-said")
        self.ack.on_click(lambda _b: self._spawn("ack"))
        self.clear.on_click(lambda _b: self._spawn("clear"))
        self.actions = widgets.HBox(
            [full_width(self.pick), self.ack, self.clear],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center", width="100%"),
        )
        self.widget = card("Live alerts", self.feed, self.actions, self.said)
        self._tasks: set[asyncio.Task] = set()

    def shown(self) -> list[str]:
        """The ids of the alerts the feed shows."""
        return list(self._latest())

    def _latest(self) -> dict[str, Alert]:
        latest: dict[str, Alert] = {}
        for alert in reversed(self.log.feed):  # one line per alert, in its newest state
            if alert.alert_id not in latest:
                latest[alert.alert_id] = alert
            if len(latest) == FEED_ROWS:
                break
        return latest

    def _spawn(self, action: str) -> None:
        task = asyncio.ensure_future(self._act(action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _act(self, action: str) -> None:
        alert_id = self.pick.value
        if not alert_id:
            self.said.value = '<span class="wb-note">pick an alert first</span>'
            return
        try:
            after = await self.session.act_on(alert_id, action)
        except Exception as exc:  # refused: say why (role, lifecycle, unknown alert)
            self.said.value = (
                f'<span style="color:#d62728">not done: {html.escape(str(exc))}</span>'
            )
            return
        self.said.value = (
            f'<span class="wb-note">{html.escape(alert_id)} ({html.escape(after["device_id"])}) '
            f"is {html.escape(after['state'])}</span>"
        )
        self.refresh()

    def refresh(self) -> None:
        latest = self._latest()
        may = self.session.may("analyst")
        self.actions.layout.display = None if may else "none"
        options = [(f"{a.device_id} {a.kind} {_when(a)}", a.alert_id) for a in latest.values()]
        if list(self.pick.options) != options:
            self.pick.options = options
        if not latest:
            self.feed.value = '<span class="wb-note">no alerts yet</span>'
            return
        self.feed.value = "".join(
            f'<div class="wb-alert" data-severity="{html.escape(a.severity)}" '
            f'data-alert="{html.escape(a.alert_id)}">{badge(a.severity)} '
            f"<b>{html.escape(a.device_id)}</b> {html.escape(a.kind)} · {_when(a)} UTC · "
            f"{html.escape(a.status)}{_handled(self.session.lifecycle, a.alert_id, ' · ')}<br>"
            f'<span class="wb-note">{html.escape(a.explanation)}</span></div>'
            for a in latest.values()
        )


class AlertHistoryPanel:
    """Every alert this view has seen, filterable; the newest first, with who handled it."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.log = session.alerts
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
                _handled(self.session.lifecycle, a.alert_id) or "–",
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
            "handled",
        ]
        shown = f"{len(rows):,} of {len(alerts):,} matching alerts ({len(self.log.by_id):,} seen)"
        self.table.value = f'<span class="wb-note">{shown}</span>' + table(header, rows)
