"""Replay recorded readings through a fresh detector and alert manager with other settings.

This answers "what would these settings have raised?" before an analyst applies them: the
dashboard's preview and the tuning notebook use it. The detector learns from the start of the
readings (warm-up) and only incidents that began in the last ``window_s`` of data time are
counted, so a fresh model's warm-up does not pass for the settings' effect.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from workbench.alerts.manager import AlertManager
from workbench.alerts.model import Alert, SeverityPolicy
from workbench.evaluation.events import EventScores, score_events
from workbench.models.ensemble import EnsembleDetector
from workbench.schema import Reading
from workbench.simulator.anomalies import Truth


@dataclass
class ReplayResult:
    """Alerts a replay raised in its counted window, with their rate and (given truth) quality."""

    alerts: list[Alert]
    """Final state of each incident that began inside the window."""
    readings: int
    window_start: datetime
    window_end: datetime
    scores: EventScores | None

    @property
    def window_minutes(self) -> float:
        return max((self.window_end - self.window_start).total_seconds() / 60, 1e-9)

    @property
    def alerts_per_minute(self) -> float:
        return len(self.alerts) / self.window_minutes

    @property
    def by_severity(self) -> dict[str, int]:
        counts = Counter(a.severity for a in self.alerts)
        return {sev: counts.get(sev, 0) for sev in ("high", "medium", "low")}

    def summary(self) -> str:
        """One line with units, as the preview shows it."""
        sev = self.by_severity
        line = (
            f"{len(self.alerts)} alerts in {self.window_minutes:.1f} min "
            f"({self.alerts_per_minute:.1f} /min; {sev['high']} high, {sev['medium']} medium, "
            f"{sev['low']} low) from {self.readings:,} readings"
        )
        if self.scores is not None and self.scores.overall.truths:
            o = self.scores.overall
            line += f" · precision {o.precision:.2f}, recall {o.recall:.2f}"
        return line


def replay(
    readings: Sequence[Reading],
    params: dict[str, Any] | None = None,
    policy: SeverityPolicy | None = None,
    window_s: float | None = None,
    truths: Sequence[Truth] = (),
    batch_size: int = 2_000,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Run ``readings`` (any order; sorted by time here) through ``EnsembleDetector(**params)``.

    Incidents still open at the end are closed there. ``truths`` (the simulator's ground truth)
    score the window's alerts; only truths that began inside the window count.
    """
    if not readings:
        raise ValueError("nothing to replay: no readings were given")
    detector = EnsembleDetector().set_params(**(params or {}))  # refuses bad settings
    manager = AlertManager(policy)
    ordered = sorted(readings, key=lambda r: r.ts)
    end = ordered[-1].ts
    start = (
        ordered[0].ts if window_s is None else max(ordered[0].ts, end - timedelta(seconds=window_s))
    )
    final: dict[str, Alert] = {}
    for i in range(0, len(ordered), batch_size):
        batch = ordered[i : i + batch_size]
        now = batch[-1].ts
        findings = detector.process_batch(batch) + detector.silent_findings(now)
        for alert in manager.process(findings, now=now):
            final[alert.alert_id] = alert
        if progress is not None:
            progress(min(i + batch_size, len(ordered)), len(ordered))
    for alert in manager.process([], now=end + manager.merge_gap + timedelta(seconds=1)):
        final[alert.alert_id] = alert
    counted = [a for a in final.values() if a.first_seen >= start]
    scores = None
    if truths:
        inside = [t for t in truths if start <= t.start <= end]
        scores = score_events(inside, counted)
    return ReplayResult(counted, len(ordered), start, end, scores)
