"""The detector settings analysts may change at run time, validated before anything is applied.

A change names some detector parameters and/or severity cut-offs; it is checked as a whole on a
copy (so the running pipeline never sees half of a bad change), and the result says exactly which
values move from what to what (that is what the audit log records).
"""

from __future__ import annotations

from typing import Any

import msgspec

from workbench.alerts.model import SeverityPolicy
from workbench.models.ensemble import EnsembleDetector

FIXED = ("max_devices",)
"""Detector parameters not offered at run time (memory bounds are the operator's choice)."""
SEVERITY_FIELDS = SeverityPolicy.__struct_fields__
SECTIONS = ("detector", "severity")


def tunable(detector: EnsembleDetector) -> dict[str, Any]:
    """The detector parameters an analyst may change, with their current values."""
    return {k: v for k, v in detector.get_params().items() if k not in FIXED}


def current(detector: EnsembleDetector, policy: SeverityPolicy) -> dict[str, dict[str, Any]]:
    """The settings as the API shows them."""
    return {"detector": tunable(detector), "severity": msgspec.to_builtins(policy)}


def _section(body: dict[str, Any], name: str, allowed: dict[str, Any]) -> dict[str, Any]:
    part = body.get(name, {})
    if not isinstance(part, dict):
        raise ValueError(f"{name!r} must be an object of {name} settings")
    unknown = sorted(set(part) - set(allowed))
    if unknown:
        raise ValueError(
            f"no {name} setting {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed)}"
        )
    return {k: v for k, v in part.items() if v != allowed[k] or type(v) is not type(allowed[k])}


def plan_change(
    body: object, detector: EnsembleDetector, policy: SeverityPolicy
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Check a requested change; (old values, new values) of what it changes, by section.

    Raises ValueError saying what is wrong and what is allowed.
    """
    if not isinstance(body, dict):
        raise ValueError('the body must be a JSON object like {"detector": {…}, "severity": {…}}')
    unknown = sorted(set(body) - set(SECTIONS))
    if unknown:
        raise ValueError(
            f"no settings section {', '.join(map(repr, unknown))}; allowed: {', '.join(SECTIONS)}"
        )
    now = current(detector, policy)
    changes = {name: _section(body, name, now[name]) for name in SECTIONS}
    EnsembleDetector(**detector.get_params()).set_params(**changes["detector"])
    SeverityPolicy(**{**now["severity"], **changes["severity"]}).check()
    old = {name: {k: now[name][k] for k in changes[name]} for name in SECTIONS if changes[name]}
    new = {name: part for name, part in changes.items() if part}
    return old, new


def apply_change(
    new: dict[str, dict[str, Any]], detector: EnsembleDetector, policy: SeverityPolicy
) -> SeverityPolicy:
    """Apply a change made by :func:`plan_change`; the severity policy to use from now on."""
    if new.get("detector"):
        detector.set_params(**new["detector"])
    if new.get("severity"):
        policy = SeverityPolicy(**{**msgspec.to_builtins(policy), **new["severity"]})
    return policy
