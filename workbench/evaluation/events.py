"""Event-level scoring of alerts against injected ground truth: precision, recall, F1, delay.

On rare events accuracy says nothing, so incidents are counted, not readings. An injected anomaly
is *found* when an alert for the same device overlaps it (its end extended by ``grace``, since a
silence can only be noticed once the device speaks again). Each alert is matched to the truth it
overlaps most; an alert that overlaps none is a false positive. Per kind: recall over the truths of
that kind; precision over the alerts matched to that kind plus the false positives that named it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from workbench.alerts.model import Alert
from workbench.simulator.anomalies import Truth


@dataclass(frozen=True)
class KindScore:
    """Event counts and rates for one anomaly kind (or overall)."""

    truths: int
    found: int
    alerts: int
    true_alerts: int

    @property
    def recall(self) -> float:
        return self.found / self.truths if self.truths else 1.0

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def as_dict(self) -> dict[str, float | int]:
        """Counts and rates, rounded for reports."""
        return {
            "truths": self.truths,
            "found": self.found,
            "alerts": self.alerts,
            "true_alerts": self.true_alerts,
            "precision": round(self.precision, 4),
            "recall": round(self.recall, 4),
            "f1": round(self.f1, 4),
        }


@dataclass
class EventScores:
    """Per-kind and overall scores plus detection delays (s) of the found truths."""

    by_kind: dict[str, KindScore]
    overall: KindScore
    delays_s: list[float] = field(default_factory=list)
    false_positives: list[Alert] = field(default_factory=list)
    missed: list[Truth] = field(default_factory=list)

    def delay_percentiles(self) -> dict[str, float | None]:
        """Median and 95th percentile of detection delay, in seconds."""
        if not self.delays_s:
            return {"median_s": None, "p95_s": None}
        p50, p95 = np.percentile(self.delays_s, [50, 95])
        return {"median_s": round(float(p50), 2), "p95_s": round(float(p95), 2)}

    def as_dict(self) -> dict[str, object]:
        """JSON-able summary."""
        return {
            "overall": self.overall.as_dict(),
            "by_kind": {k: s.as_dict() for k, s in sorted(self.by_kind.items())},
            "delay": self.delay_percentiles(),
        }


def _overlap_s(alert: Alert, truth: Truth, grace: timedelta) -> float | None:
    """Seconds of overlap (≥ 0) between an alert and a truth window, None if disjoint."""
    start = max(alert.first_seen, truth.start)
    end = min(alert.last_seen, truth.end + grace)
    return (end - start).total_seconds() if start <= end else None


def score_events(
    truths: Sequence[Truth], alerts: Iterable[Alert], grace: timedelta = timedelta(seconds=60)
) -> EventScores:
    """Match alerts to truths per device and count found truths and true/false alerts."""
    by_device: dict[str, list[Truth]] = defaultdict(list)
    for t in truths:
        by_device[t.device_id].append(t)
    first_alert: dict[int, Alert] = {}
    matched_alerts: dict[str, int] = defaultdict(int)
    false_alerts: dict[str, int] = defaultdict(int)
    false_positives: list[Alert] = []
    all_alerts = 0
    for alert in alerts:
        all_alerts += 1
        best: tuple[float, Truth] | None = None
        for t in by_device.get(alert.device_id, ()):
            overlap = _overlap_s(alert, t, grace)
            if overlap is not None:
                if best is None or overlap > best[0]:
                    best = (overlap, t)
                seen = first_alert.get(id(t))
                if seen is None or alert.first_seen < seen.first_seen:
                    first_alert[id(t)] = alert
        if best is None:
            false_alerts[alert.kind] += 1
            false_positives.append(alert)
        else:
            matched_alerts[best[1].kind] += 1

    kinds = {t.kind for t in truths} | set(false_alerts)
    by_kind = {}
    for kind in kinds:
        of_kind = [t for t in truths if t.kind == kind]
        matched = matched_alerts.get(kind, 0)
        by_kind[kind] = KindScore(
            truths=len(of_kind),
            found=sum(1 for t in of_kind if id(t) in first_alert),
            alerts=matched + false_alerts.get(kind, 0),
            true_alerts=matched,
        )
    overall = KindScore(
        truths=len(truths),
        found=len(first_alert),
        alerts=all_alerts,
        true_alerts=all_alerts - len(false_positives),
    )
    delays = [
        max(0.0, (first_alert[id(t)].first_seen - t.start).total_seconds())
        for t in truths
        if id(t) in first_alert
    ]
    missed = [t for t in truths if id(t) not in first_alert]
    return EventScores(by_kind, overall, delays, false_positives, missed)
