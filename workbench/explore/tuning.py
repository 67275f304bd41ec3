"""Compare detector settings on one recorded window: replay each, tabulate alerts and quality.

Built on :func:`workbench.evaluation.replay.replay`; the tuning notebook's comparison table and
threshold sweep are this module's output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from workbench.alerts.model import SeverityPolicy
from workbench.evaluation.replay import ReplayResult, replay
from workbench.explore.table import html_table
from workbench.schema import Reading
from workbench.simulator.anomalies import Truth

COLUMNS = (
    "settings",
    "changed",
    "alerts",
    "alerts/min",
    "high",
    "medium",
    "low",
    "precision",
    "recall",
    "F1",
)


def compare(
    readings: Sequence[Reading],
    variants: Mapping[str, Mapping[str, Any]],
    truths: Sequence[Truth] = (),
    window_s: float | None = None,
    policy: SeverityPolicy | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, ReplayResult]:
    """Replay ``readings`` once per named set of detector parameters."""
    results = {}
    for name, params in variants.items():
        results[name] = replay(readings, dict(params), policy, window_s, truths)
        if progress is not None:
            progress(f"{name}: {results[name].summary()}")
    return results


def changed(params: Mapping[str, Any], base: Mapping[str, Any]) -> str:
    """The parameters that differ from ``base``, as ``name=value`` (or 'as running')."""
    diff = [f"{k}={v}" for k, v in params.items() if base.get(k) != v]
    return ", ".join(diff) or "as running"


def comparison_table(
    results: Mapping[str, ReplayResult],
    variants: Mapping[str, Mapping[str, Any]],
    base: Mapping[str, Any],
) -> str:
    """One row per setting: alerts, alerts/min, severities and (given truth) precision/recall/F1."""
    rows = []
    for name, r in results.items():
        sev = r.by_severity
        quality: list[object] = [None, None, None]
        if r.scores is not None and r.scores.overall.truths:
            o = r.scores.overall
            quality = [round(o.precision, 3), round(o.recall, 3), round(o.f1, 3)]
        rows.append(
            [
                name,
                changed(variants[name], base),
                len(r.alerts),
                round(r.alerts_per_minute, 2),
                sev["high"],
                sev["medium"],
                sev["low"],
                *quality,
            ]
        )
    window = next(iter(results.values()), None)
    caption = None
    if window is not None:
        caption = (
            f"alerts raised in {window.window_minutes:.1f} min of data time "
            f"({window.readings:,} readings replayed per setting)"
        )
    return html_table(COLUMNS, rows, caption)
