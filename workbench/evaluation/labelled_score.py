"""Row predictions scored against row labels (1: anomalous), point-wise and event by event.

Point-wise every row counts once: precision, recall, F1, the false-alarm rate (normal rows
predicted) and the missed-alarm rate (labelled rows not predicted). An *event* is a maximal run of
label 1 in one file; it is found when some predicted row overlaps it, with a delay from its first
row to the first predicted row inside it (0 s when a prediction was already up). A *predicted
event* is a maximal run of predicted rows; it is true when it overlaps an event. :func:`figures`
gives them all in one dict, units in the names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from workbench.evaluation.events import EventScores, KindScore


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass(frozen=True)
class Pointwise:
    """Row counts of a prediction against labels, and the rates made of them."""

    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int

    @property
    def precision(self) -> float | None:
        return _share(self.true_positive, self.true_positive + self.false_positive)

    @property
    def recall(self) -> float | None:
        return _share(self.true_positive, self.true_positive + self.false_negative)

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return None if p is None or r is None else (2 * p * r / (p + r) if p + r else 0.0)

    @property
    def false_alarm_rate(self) -> float | None:
        """Normal rows predicted anomalous, of all normal rows."""
        return _share(self.false_positive, self.false_positive + self.true_negative)

    @property
    def missed_alarm_rate(self) -> float | None:
        """Labelled rows not predicted, of all labelled rows."""
        return _share(self.false_negative, self.false_negative + self.true_positive)


@dataclass(frozen=True)
class LabelledFile:
    """One file's rows: label, prediction and time (None where the row had no usable time)."""

    labels: Sequence[int]
    preds: Sequence[int]
    times: Sequence[datetime | None]


def runs(flags: Sequence[int]) -> list[tuple[int, int]]:
    """(first, last) row of each maximal run of 1s."""
    out: list[tuple[int, int]] = []
    start = None
    for i, flag in enumerate([*flags, 0]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def pointwise(files: Sequence[LabelledFile]) -> Pointwise:
    """Row counts over every file."""
    pairs = [(label, pred) for f in files for label, pred in zip(f.labels, f.preds, strict=True)]
    return Pointwise(
        true_positive=sum(1 for label, pred in pairs if label and pred),
        false_positive=sum(1 for label, pred in pairs if not label and pred),
        false_negative=sum(1 for label, pred in pairs if label and not pred),
        true_negative=sum(1 for label, pred in pairs if not label and not pred),
    )


def _delay_s(f: LabelledFile, first: int, last: int) -> float | None:
    """Seconds from an event's first row to its first predicted row; None if not found."""
    hit = next((i for i in range(first, last + 1) if f.preds[i]), None)
    if hit is None:
        return None
    if hit == first:
        return 0.0
    start, at = f.times[first], f.times[hit]
    return None if start is None or at is None else (at - start).total_seconds()


def event_scores(files: Sequence[LabelledFile]) -> EventScores:
    """Events found (with their delays) and predicted events that were true, over every file."""
    events = found = predicted = true_predicted = 0
    delays: list[float] = []
    for f in files:
        labelled = runs(f.labels)
        events += len(labelled)
        for first, last in labelled:
            if any(f.preds[first : last + 1]):
                found += 1
                delay = _delay_s(f, first, last)
                if delay is not None:
                    delays.append(delay)
        for first, last in runs(f.preds):
            predicted += 1
            true_predicted += any(f.labels[first : last + 1])
    overall = KindScore(truths=events, found=found, alerts=predicted, true_alerts=true_predicted)
    return EventScores(by_kind={}, overall=overall, delays_s=delays)


def _pct(value: float | None) -> float | None:
    return None if value is None else round(100.0 * value, 3)


def figures(labelled: Sequence[LabelledFile]) -> dict[str, dict[str, Any]]:
    """The point-wise and event-level figures, units in their names."""
    points = pointwise(labelled)
    events = event_scores(labelled)
    e = events.overall
    delays = events.delay_percentiles()
    return {
        "pointwise": {
            "rows": sum(len(f.labels) for f in labelled),
            "labelled_rows": points.true_positive + points.false_negative,
            "predicted_rows": points.true_positive + points.false_positive,
            "true_positive_rows": points.true_positive,
            "false_positive_rows": points.false_positive,
            "false_negative_rows": points.false_negative,
            "true_negative_rows": points.true_negative,
            "precision_pct": _pct(points.precision),
            "recall_pct": _pct(points.recall),
            "f1_pct": _pct(points.f1),
            "false_alarm_rate_pct": _pct(points.false_alarm_rate),
            "missed_alarm_rate_pct": _pct(points.missed_alarm_rate),
        },
        "events": {
            "labelled_events": e.truths,
            "found_events": e.found,
            "predicted_events": e.alerts,
            "true_predicted_events": e.true_alerts,
            "precision_pct": _pct(e.precision if e.alerts else None),
            "recall_pct": _pct(e.recall if e.truths else None),
            "f1_pct": _pct(e.f1 if e.truths and e.alerts else None),
            "delay_median_s": delays["median_s"],
            "delay_p95_s": delays["p95_s"],
            "delay_max_s": max(events.delays_s) if events.delays_s else None,
        },
    }
