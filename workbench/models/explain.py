"""A finding in words — which metric, what was seen, what was expected — for alerts and the API."""

from __future__ import annotations

from workbench.models.base import Finding
from workbench.schema import UNITS

KIND_WORDS = {
    "spike": "sudden spike",
    "level_shift": "level shift",
    "drift": "drift",
    "stuck": "stuck sensor (same value repeated)",
    "noise_burst": "burst of noise",
    "counter_surge": "counter rising unusually fast",
    "counter_reset": "counter reset (it moved backwards)",
    "location_jump": "location jump",
    "dropout": "dropout",
    "outlier": "unusual reading for its fleet",
}


def explain(f: Finding) -> str:
    """The finding as one sentence with units."""
    what = KIND_WORDS.get(f.kind, f.kind.replace("_", " "))
    if f.metric is None:
        missing = "" if f.observed is None else f", about {f.observed:,.0f} readings missing"
        return f"{what} on {f.device_id}: it sent nothing for longer than usual{missing}"
    if f.metric == "location":
        moved = (
            "" if f.observed is None else f": reported {f.observed:,.1f} km from its usual place"
        )
        return f"{what} on {f.device_id}{moved}"
    subject = f"{what} in {f.metric} on {f.device_id}"
    if f.observed is None:
        return subject
    unit = UNITS.get(f.metric, "")
    if f.kind == "counter_reset":
        return f"{subject}: it moved {f.observed:,.6g} {unit} against its direction".rstrip()
    if f.kind == "counter_surge":
        rate = f"advancing {f.observed:,.4g} {unit}/h"
        usual = (
            "" if f.expected_high is None else f", usually under {f.expected_high:,.4g} {unit}/h"
        )
        return f"{subject}: {rate}{usual}"
    observed = f"observed {f.observed:,.2f} {unit}".rstrip()
    if f.expected_low is None or f.expected_high is None:
        return f"{subject}: {observed}"
    expected = f"{f.expected_low:,.2f}–{f.expected_high:,.2f} {unit}".rstrip()
    return f"{subject}: {observed}, expected {expected}"
