"""The audit log: every change made through the API or the command line — who, what, when, and
the value before and after — stored beside the alerts and queryable."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from workbench.store.db import Database, iso


@dataclass(frozen=True)
class AuditQuery:
    """Filters and paging for the audit log."""

    since: float | None = None
    until: float | None = None
    actor: str | None = None
    """Part of the actor's name."""
    action: str | None = None
    limit: int = 100
    offset: int = 0


class AuditLog:
    """Append-only records of changes; synchronous (run it off an event loop)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, actor: str, action: str, target: str, old: Any, new: Any) -> None:
        """Note that ``actor`` changed ``target`` from ``old`` to ``new`` (JSON-able values)."""
        self.db.execute(
            "INSERT INTO audit (at, actor, action, target, old_value, new_value) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (time.time(), actor, action, target, json.dumps(old), json.dumps(new)),
        )

    def query(self, q: AuditQuery) -> tuple[list[dict[str, Any]], int]:
        """One page of matching records, newest first, and how many match in all."""
        where, params = [], []
        for clause, value in (
            ("at >= ?", q.since),
            ("at <= ?", q.until),
            ("actor LIKE ?", None if q.actor is None else f"%{q.actor}%"),
            ("action = ?", q.action),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        rows, total = self.db.page("audit", where, params, "at DESC, id DESC", q.limit, q.offset)
        return [
            {
                "id": r["id"],
                "at": iso(r["at"]),
                "actor": r["actor"],
                "action": r["action"],
                "target": r["target"],
                "old": json.loads(r["old_value"]),
                "new": json.loads(r["new_value"]),
            }
            for r in rows
        ], total
