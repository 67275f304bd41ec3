"""Acknowledge or clear an alert, audited: the one way the API and the dashboard do it."""

from __future__ import annotations

from typing import Any

from workbench.security.audit import AuditLog
from workbench.store.alerts import AlertStore
from workbench.store.db import Database

ACTIONS = {"ack": "acknowledged", "clear": "cleared"}
"""Action → the state it moves an alert to."""


def act_on_alert(db: Database, alert_id: str, action: str, actor: str) -> dict[str, Any]:
    """Move the alert to the action's state, noting who and when, and audit it; the alert after.

    Raises NotFound for an unknown alert, LifecycleError when its state does not allow it, and
    ValueError for an action other than those in ``ACTIONS``.
    """
    state = ACTIONS.get(action)
    if state is None:
        raise ValueError(f"action {action!r}: choose {' or '.join(ACTIONS)}")
    with db.transaction():
        before, after = AlertStore(db).transition(alert_id, state, actor)
        AuditLog(db).record(
            actor,
            f"alert.{'acknowledge' if action == 'ack' else 'clear'}",
            f"alert {alert_id}",
            {"state": before["state"]},
            {"state": after["state"], "by": actor, "at": after[f"{state}_at"]},
        )
    return after
