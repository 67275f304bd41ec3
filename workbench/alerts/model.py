"""The alert record: one incident on one device, with a stable id, a severity and an explanation.

The id is derived from the data alone (device, kind, metric, the first anomalous reading's time and
sequence number), never from wall-clock time or arrival order, so replaying the same readings
yields the same ids and a consumer can de-duplicate on it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import msgspec

from workbench.models.base import Finding, check_range
from workbench.profiles.active import active

SEVERITIES = ("low", "medium", "high")

CRITICAL_METRICS: dict[str, float] = {
    **{m.name: m.criticality for t in active().profiles.types for m in t.metrics},
    "location": 1.0,  # a device that moved may have been stolen
}
"""How much a problem with each metric matters (1 = most), as the profiles declare it; a silent
device counts as 0.9."""
SILENCE_WEIGHT = 0.9


class SeverityPolicy(msgspec.Struct, kw_only=True):
    """How score, duration and metric criticality map to high / medium / low.

    The weighted score is ``score × criticality``, raised by ``escalate_per_minute`` for every
    minute the incident lasts (capped at 1); at or above ``high`` it is high, at or above ``medium``
    it is medium, else low.
    """

    high: float = 0.8
    medium: float = 0.5
    escalate_per_minute: float = 0.05

    def check(self) -> None:
        """Refuse cut-offs that are not ordered within [0, 1]."""
        check_range("high", self.high, 0.0, 1.0)
        check_range("medium", self.medium, 0.0, self.high)
        check_range("escalate_per_minute", self.escalate_per_minute, 0.0, 1.0)

    def severity(self, score: float, metric: str | None, minutes: float) -> str:
        """The severity of an incident with this peak score, metric and duration."""
        weight = SILENCE_WEIGHT if metric is None else CRITICAL_METRICS.get(metric, 0.7)
        level = min(1.0, score * weight + self.escalate_per_minute * minutes)
        if level >= self.high:
            return "high"
        return "medium" if level >= self.medium else "low"


class Alert(msgspec.Struct, kw_only=True):
    """One incident; it is updated (same id) while it lasts, then closed."""

    alert_id: str
    device_id: str
    device_type: str
    kind: str
    metric: str | None
    severity: str
    score: float
    """Peak anomaly score of the incident, 0–1."""
    first_seen: datetime
    last_seen: datetime
    readings: int
    """Anomalous readings in the incident so far."""
    observed: float | None
    expected_low: float | None
    expected_high: float | None
    explanation: str
    status: str = "active"
    """'active' while findings keep coming, 'closed' once the device is back to normal."""


def alert_id(finding: Finding) -> str:
    """Stable id of the incident that ``finding`` opens (same data → same id)."""
    key = "|".join(
        (
            finding.device_id,
            finding.kind,
            finding.metric or "-",
            finding.ts.isoformat(),
            str(finding.seq),
        )
    )
    return hashlib.blake2b(key.encode(), digest_size=10).hexdigest()
