"""Turn detector findings into incidents: one alert per incident, updated while it lasts.

Findings on one device and metric less than ``merge_gap`` apart (in data time, so a replay
groups them the same way) belong to one incident. The manager reports which alerts changed in a way
worth telling the world — opened, severity changed, closed, or a periodic refresh — so the alert
topic carries incidents, not a storm of per-reading messages.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime, timedelta

import msgspec

from workbench.alerts.model import Alert, SeverityPolicy, alert_id
from workbench.models.base import Finding
from workbench.models.explain import explain

IncidentKey = tuple[str, str | None]
"""(device id, metric): one problem with one sensor is one incident, whatever detectors call it;
the alert's kind is that of its strongest finding."""


class AlertManager:
    """Incident tracking with bounded memory: at most ``history`` alerts are kept."""

    def __init__(
        self,
        policy: SeverityPolicy | None = None,
        merge_gap: timedelta = timedelta(seconds=60),
        refresh: timedelta = timedelta(seconds=30),
        history: int = 10_000,
    ) -> None:
        self.policy = policy or SeverityPolicy()
        self.policy.check()
        if merge_gap <= timedelta(0) or refresh <= timedelta(0) or history < 1:
            raise ValueError("merge_gap and refresh must be positive and history at least 1")
        self.merge_gap = merge_gap
        self.refresh = refresh
        self.history_size = history
        self.history: OrderedDict[str, Alert] = OrderedDict()
        """alert id → alert, oldest first; active and closed alike."""
        self._active: dict[IncidentKey, Alert] = {}
        self._published_at: dict[str, datetime] = {}

    @property
    def active(self) -> list[Alert]:
        """Incidents still going on."""
        return list(self._active.values())

    def process(self, findings: Iterable[Finding], now: datetime) -> list[Alert]:
        """Fold findings in; close incidents quiet since ``now - merge_gap`` (data time).

        Returns the alerts to publish, each once, in their current state.
        """
        changed: dict[str, Alert] = {}
        for f in findings:
            key = (f.device_id, f.metric)
            alert = self._active.get(key)
            if alert is not None and f.ts - alert.last_seen > self.merge_gap:
                changed[alert.alert_id] = self._close(key, alert)
                alert = None
            if alert is None:
                alert = self._open(key, f)
                changed[alert.alert_id] = alert
            elif self._update(alert, f):
                changed[alert.alert_id] = alert
        for key, alert in list(self._active.items()):
            if now - alert.last_seen > self.merge_gap:
                changed[alert.alert_id] = self._close(key, alert)
            elif now - self._published_at.get(alert.alert_id, now) >= self.refresh:
                changed[alert.alert_id] = alert
        for alert in changed.values():
            self._published_at[alert.alert_id] = now
        return [msgspec.structs.replace(a) for a in changed.values()]

    def incidents(self, device_ids: set[str]) -> dict[str, list[tuple[Alert, datetime | None]]]:
        """The active incidents of these devices, each with when it was last published (what a
        checkpoint keeps so another worker can carry them on)."""
        out: dict[str, list[tuple[Alert, datetime | None]]] = {}
        for (device_id, _metric), alert in self._active.items():
            if device_id in device_ids:
                published = self._published_at.get(alert.alert_id)
                out.setdefault(device_id, []).append((alert, published))
        return out

    def adopt(self, incidents: Iterable[tuple[Alert, datetime | None]]) -> None:
        """Carry on incidents another worker began (restored from its checkpoint): the same
        alert ids are updated and closed here, never opened twice."""
        for alert, published in incidents:
            self._active[(alert.device_id, alert.metric)] = alert
            self._remember(alert)
            if published is not None:
                self._published_at[alert.alert_id] = published

    def release(self, device_ids: set[str]) -> None:
        """Stop tracking these devices' incidents without closing them (their partition moved to
        another worker, which carries them on)."""
        for key, alert in list(self._active.items()):
            if key[0] in device_ids:
                del self._active[key]
                self._published_at.pop(alert.alert_id, None)
                self.history.pop(alert.alert_id, None)

    def set_policy(self, policy: SeverityPolicy) -> None:
        """Change severity cut-offs at run time; active incidents are re-rated at their next
        update."""
        policy.check()
        self.policy = policy

    def _open(self, key: IncidentKey, f: Finding) -> Alert:
        alert = Alert(
            alert_id=alert_id(f),
            device_id=f.device_id,
            device_type=f.device_type,
            kind=f.kind,
            metric=f.metric,
            severity=self.policy.severity(f.score, f.metric, 0.0),
            score=f.score,
            first_seen=f.ts,
            last_seen=f.ts,
            readings=1,
            observed=f.observed,
            expected_low=f.expected_low,
            expected_high=f.expected_high,
            explanation=explain(f),
        )
        self._active[key] = alert
        self._remember(alert)
        return alert

    def _update(self, alert: Alert, f: Finding) -> bool:
        """Extend an incident; True when its severity changed (worth publishing at once)."""
        alert.last_seen = max(alert.last_seen, f.ts)
        alert.readings += 1
        if f.score >= alert.score:
            alert.score = f.score
            alert.kind = f.kind
            alert.observed = f.observed
            alert.expected_low = f.expected_low
            alert.expected_high = f.expected_high
            alert.explanation = explain(f)
        minutes = (alert.last_seen - alert.first_seen).total_seconds() / 60
        severity = self.policy.severity(alert.score, alert.metric, minutes)
        if severity == alert.severity:
            return False
        alert.severity = severity
        return True

    def _close(self, key: IncidentKey, alert: Alert) -> Alert:
        alert.status = "closed"
        del self._active[key]
        self._published_at.pop(alert.alert_id, None)
        return alert

    def _remember(self, alert: Alert) -> None:
        self.history[alert.alert_id] = alert
        while len(self.history) > self.history_size:
            old_id, old = self.history.popitem(last=False)
            if old.status == "active":  # evicted while still open: stop tracking it too
                self._active.pop((old.device_id, old.metric), None)
                self._published_at.pop(old_id, None)
