"""The alert history: alerts upserted by id as the pipeline changes them, with a lifecycle.

An alert is ``active`` until someone acknowledges it (``acknowledged``, with who and when), and
``cleared`` once its incident ends (by ``pipeline``) or an analyst clears it. Inserting the same
alert again changes nothing; a later state of an incident updates its figures but never its
lifecycle, except that the incident's end clears it. Alerts whose last reading is older than the
retention period are deleted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.alerts.model import Alert
from workbench.store.db import Database, NotFound, iso

STATES = ("active", "acknowledged", "cleared")
TRANSITIONS = {"acknowledged": ("active",), "cleared": ("active", "acknowledged")}
"""Target state → the states it may be reached from."""
DEFAULT_RETENTION_DAYS = 30
MAX_RETENTION_DAYS = 3650
PIPELINE = "pipeline"
"""Who clears an alert whose incident ended by itself."""

_COLUMNS = (
    "alert_id", "device_id", "device_type", "kind", "metric", "severity", "score", "first_seen",
    "last_seen", "readings", "observed", "expected_low", "expected_high", "explanation",
    "incident", "state", "cleared_by", "cleared_at", "updated_at",
)  # fmt: skip
_FIGURES = (
    "severity", "score", "kind", "last_seen", "readings", "observed", "expected_low",
    "expected_high", "explanation", "incident", "updated_at",
)  # fmt: skip
_UPSERT = (
    f"INSERT INTO alerts ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    "ON CONFLICT (alert_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _FIGURES)
    + ", state = CASE WHEN excluded.incident = 'closed' THEN 'cleared' ELSE alerts.state END"
    ", cleared_by = CASE WHEN excluded.incident = 'closed' AND alerts.state <> 'cleared' "
    "THEN excluded.cleared_by ELSE alerts.cleared_by END"
    ", cleared_at = CASE WHEN excluded.incident = 'closed' AND alerts.state <> 'cleared' "
    "THEN excluded.cleared_at ELSE alerts.cleared_at END"
)
_TIMES = ("first_seen", "last_seen", "acknowledged_at", "cleared_at", "updated_at")


class LifecycleError(ValueError):
    """The alert is not in a state the requested change may start from."""


@dataclass(frozen=True)
class AlertQuery:
    """Filters and paging for the alert history; empty tuples mean 'any'."""

    since: float | None = None
    """Unix seconds: alerts still going on at or after this time."""
    until: float | None = None
    """Unix seconds: alerts that started at or before this time."""
    severities: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    limit: int = 100
    offset: int = 0


def _row(alert: Alert, now: float) -> tuple:
    closed = alert.status == "closed"
    return (
        alert.alert_id, alert.device_id, alert.device_type, alert.kind, alert.metric,
        alert.severity, alert.score, alert.first_seen.timestamp(), alert.last_seen.timestamp(),
        alert.readings, alert.observed, alert.expected_low, alert.expected_high,
        alert.explanation, alert.status, "cleared" if closed else "active",
        PIPELINE if closed else None, now if closed else None, now,
    )  # fmt: skip


def _public(row: dict[str, Any]) -> dict[str, Any]:
    return {k: iso(v) if k in _TIMES else v for k, v in row.items()}


class AlertStore:
    """Alerts in a :class:`Database`; every method is synchronous (run it off the event loop)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def upsert(self, alerts: Iterable[Alert], now: float | None = None) -> int:
        """Insert or update alerts by id; how many were given."""
        now = time.time() if now is None else now
        rows = [_row(a, now) for a in alerts]
        if rows:
            with self.db.transaction():
                self.db.executemany(_UPSERT, rows)
        return len(rows)

    def get(self, alert_id: str) -> dict[str, Any]:
        """One alert as the API shows it; NotFound if there is none."""
        rows = self.db.query("SELECT * FROM alerts WHERE alert_id = ?", (alert_id,))
        if not rows:
            raise NotFound(f"no alert with id {alert_id!r}")
        return _public(rows[0])

    def lifecycles(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored ones of these alerts, as ``get`` shows them, by id (one query)."""
        if not alert_ids:
            return {}
        marks = ", ".join("?" * len(alert_ids))
        rows = self.db.query(f"SELECT * FROM alerts WHERE alert_id IN ({marks})", alert_ids)
        return {r["alert_id"]: _public(r) for r in rows}

    def query(self, q: AlertQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of matching alerts, newest first, and how many match in all."""
        where, params = [], []
        if q.since is not None:
            where.append("last_seen >= ?")
            params.append(q.since)
        if q.until is not None:
            where.append("first_seen <= ?")
            params.append(q.until)
        for column, values in (
            ("severity", q.severities),
            ("kind", q.kinds),
            ("device_id", q.devices),
            ("state", q.states),
        ):
            if values:
                where.append(f"{column} IN ({', '.join('?' * len(values))})")
                params.extend(values)
        rows, total = self.db.page(
            "alerts", where, params, "last_seen DESC, alert_id", q.limit, q.offset
        )
        return [_public(r) for r in rows], total

    def transition(
        self, alert_id: str, state: str, who: str, now: float | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Acknowledge or clear an alert, noting who and when; (before, after)."""
        if state not in TRANSITIONS:
            raise ValueError(f"state {state!r}: an alert can be moved to {', '.join(TRANSITIONS)}")
        now = time.time() if now is None else now
        with self.db.transaction():
            before = self.get(alert_id)
            if before["state"] not in TRANSITIONS[state]:
                by = before.get(f"{before['state']}_by")
                raise LifecycleError(
                    f"alert {alert_id} is {before['state']}"
                    + (f" (by {by} at {before[before['state'] + '_at']})" if by else "")
                    + f"; it can be {state} only when {' or '.join(TRANSITIONS[state])}"
                )
            prefix = "acknowledged" if state == "acknowledged" else "cleared"
            self.db.execute(
                f"UPDATE alerts SET state = ?, {prefix}_by = ?, {prefix}_at = ? WHERE alert_id = ?",
                (state, who, now, alert_id),
            )
            return before, self.get(alert_id)

    def retention_days(self) -> int:
        """Days an alert is kept after its last reading."""
        rows = self.db.query("SELECT value FROM config WHERE name = 'retention_days'")
        return int(rows[0]["value"]) if rows else DEFAULT_RETENTION_DAYS

    def set_retention_days(self, days: int) -> int:
        """Change the retention period; returns the old one."""
        if isinstance(days, bool) or not isinstance(days, int):
            raise ValueError(f"days={days!r}: it must be a whole number of days")
        if not 1 <= days <= MAX_RETENTION_DAYS:
            raise ValueError(f"days={days} is out of range: allowed 1 to {MAX_RETENTION_DAYS}")
        with self.db.transaction():
            old = self.retention_days()
            self.db.execute("DELETE FROM config WHERE name = 'retention_days'")
            self.db.execute(
                "INSERT INTO config (name, value) VALUES ('retention_days', ?)", (str(days),)
            )
        return old

    def enforce_retention(self, now: float | None = None) -> int:
        """Delete alerts whose last reading is older than the retention period; how many."""
        now = time.time() if now is None else now
        cutoff = now - self.retention_days() * 86_400
        return self.db.execute("DELETE FROM alerts WHERE last_seen < ?", (cutoff,))

    def count(self) -> int:
        """Alerts stored."""
        return int(self.db.query("SELECT COUNT(*) AS n FROM alerts")[0]["n"])
