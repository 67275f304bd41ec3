"""The alert store, tokens and audit log on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from tests.postgres_helpers import throwaway_postgres
from workbench.alerts.model import Alert
from workbench.security.audit import AuditLog, AuditQuery
from workbench.security.tokens import TokenStore
from workbench.store.alerts import AlertQuery, AlertStore, LifecycleError
from workbench.store.db import Database, DatabaseError, NotFound


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with throwaway_postgres() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        database = Database(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        database = Database(request.getfixturevalue("postgres_url"))
        for table in ("alerts", "tokens", "audit", "config"):
            database.execute(f"DELETE FROM {table}")
    yield database
    database.close()


def make_alert(n: int, days_ago: float = 0.0, **changes: object) -> Alert:
    seen = datetime.now(UTC) - timedelta(days=days_ago)
    alert = Alert(
        alert_id=f"a{n:04d}",
        device_id=f"dev-{n % 3}",
        device_type="env_sensor",
        kind="spike",
        metric="temperature",
        severity="low",
        score=0.3,
        first_seen=seen,
        last_seen=seen,
        readings=1,
        observed=30.0,
        expected_low=3.0,
        expected_high=6.0,
        explanation=f"sudden spike in temperature on dev-{n % 3}",
    )
    return msgspec.structs.replace(alert, **changes)


def test_inserting_the_same_alert_again_keeps_one_row(db: Database) -> None:
    store = AlertStore(db)
    alert = make_alert(1)
    store.upsert([alert])
    store.upsert([alert, alert])
    assert store.count() == 1
    later = msgspec.structs.replace(
        alert, severity="high", readings=5, last_seen=alert.last_seen + timedelta(seconds=30)
    )
    store.upsert([later])
    row = store.get("a0001")
    assert (row["severity"], row["readings"], row["state"]) == ("high", 5, "active")
    assert store.count() == 1


def test_lifecycle_active_acknowledged_cleared_with_who_and_when(db: Database) -> None:
    store = AlertStore(db)
    store.upsert([make_alert(1), make_alert(2)])
    before, after = store.transition("a0001", "acknowledged", "ann", now=1_800_000_000.0)
    assert before["state"] == "active"
    assert after["state"] == "acknowledged" and after["acknowledged_by"] == "ann"
    assert after["acknowledged_at"].startswith("2027-01-15")
    with pytest.raises(LifecycleError, match=r"acknowledged \(by ann"):
        store.transition("a0001", "acknowledged", "bob")
    # The pipeline updating the incident keeps its acknowledgement...
    store.upsert([make_alert(1, severity="medium", readings=3)])
    assert store.get("a0001")["state"] == "acknowledged"
    # ...and the incident ending clears it, by the pipeline.
    store.upsert([make_alert(1, status="closed")])
    row = store.get("a0001")
    assert (row["state"], row["cleared_by"]) == ("cleared", "pipeline")
    assert row["acknowledged_by"] == "ann"
    with pytest.raises(LifecycleError):
        store.transition("a0001", "acknowledged", "bob")
    _, cleared = store.transition("a0002", "cleared", "carl")
    assert (cleared["state"], cleared["cleared_by"]) == ("cleared", "carl")
    store.upsert([make_alert(2, status="closed")])  # an analyst's clearing is not overwritten
    assert store.get("a0002")["cleared_by"] == "carl"
    with pytest.raises(NotFound):
        store.transition("nope", "cleared", "carl")


def test_query_filters_and_pages_newest_first(db: Database) -> None:
    store = AlertStore(db)
    store.upsert(
        [make_alert(n, days_ago=n, severity="high" if n % 2 else "low") for n in range(1, 11)]
    )
    items, total = store.query(AlertQuery(severities=("high",), limit=2))
    assert total == 5 and [a["alert_id"] for a in items] == ["a0001", "a0003"]
    items, _ = store.query(AlertQuery(severities=("high",), limit=2, offset=2))
    assert [a["alert_id"] for a in items] == ["a0005", "a0007"]
    since = time.time() - 3.5 * 86_400
    items, total = store.query(AlertQuery(since=since))
    assert total == 3
    items, total = store.query(AlertQuery(devices=("dev-0",), kinds=("spike",)))
    assert {a["device_id"] for a in items} == {"dev-0"} and total == 3
    store.transition("a0004", "acknowledged", "ann")
    assert store.query(AlertQuery(states=("acknowledged",)))[1] == 1


def test_retention_deletes_alerts_older_than_the_period(db: Database) -> None:
    store = AlertStore(db)
    store.upsert([make_alert(1, days_ago=40), make_alert(2, days_ago=10), make_alert(3)])
    assert store.retention_days() == 30
    assert store.enforce_retention() == 1
    assert store.set_retention_days(7) == 30
    assert store.enforce_retention() == 1
    assert [a["alert_id"] for a in store.query(AlertQuery())[0]] == ["a0003"]
    for bad in (0, 5000, 1.5, "7", True):
        with pytest.raises(ValueError, match="days"):
            store.set_retention_days(bad)  # type: ignore[arg-type]
    assert store.retention_days() == 7


def test_tokens_are_stored_hashed_and_revocable(db: Database) -> None:
    tokens = TokenStore(db)
    token, record = tokens.create("ann", "analyst", "test")
    stored = db.query("SELECT * FROM tokens")
    assert len(stored) == 1 and token not in str(stored)  # only its hash is kept
    who = tokens.authenticate(token)
    assert who is not None and (who.name, who.role) == ("ann", "analyst")
    assert who.may("viewer") and who.may("analyst") and not who.may("admin")
    for wrong in (None, "", token[:-1] + ("A" if token[-1] != "A" else "B"), "wb_x_y", "nope"):
        assert tokens.authenticate(wrong) is None
    tokens.revoke(record["token_id"], "admin")
    assert tokens.authenticate(token) is None
    assert tokens.get(record["token_id"])["revoked_by"] == "admin"
    with pytest.raises(ValueError, match="viewer, analyst, admin"):
        tokens.create("bob", "root", "test")


def test_audit_log_records_old_and_new_and_is_queryable(db: Database) -> None:
    audit = AuditLog(db)
    audit.record("ann (analyst)", "alert.acknowledge", "alert a1", {"state": "active"},
                 {"state": "acknowledged"})  # fmt: skip
    audit.record("root (admin)", "retention.update", "alert retention (days)", 30, 7)
    items, total = audit.query(AuditQuery())
    assert total == 2 and items[0]["action"] == "retention.update"
    assert (items[0]["old"], items[0]["new"]) == (30, 7)
    items, total = audit.query(AuditQuery(actor="ann"))
    assert total == 1 and items[0]["new"] == {"state": "acknowledged"}
    assert audit.query(AuditQuery(action="token.create"))[1] == 0


def test_an_unknown_database_url_says_what_is_allowed(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="sqlite:///PATH or postgresql://"):
        Database("mysql://x")
    with pytest.raises(DatabaseError, match=r"cannot connect .* postgresql://u:\*\*\*@127"):
        Database("postgresql://u:secret@127.0.0.1:1/db")
