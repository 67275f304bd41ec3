"""One database connection for alerts, tokens and the audit log: SQLite by default, or PostgreSQL.

Both speak the same SQL here (``?`` placeholders are rewritten for PostgreSQL; upserts use
``ON CONFLICT``, which both understand). Times are stored as Unix seconds. The connection is shared
under a lock, so the command line, a server's database thread and a Voilà kernel may all use it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL,
    device_type TEXT NOT NULL,
    kind TEXT NOT NULL,
    metric TEXT,
    severity TEXT NOT NULL,
    score DOUBLE PRECISION NOT NULL,
    first_seen DOUBLE PRECISION NOT NULL,
    last_seen DOUBLE PRECISION NOT NULL,
    readings INTEGER NOT NULL,
    observed DOUBLE PRECISION,
    expected_low DOUBLE PRECISION,
    expected_high DOUBLE PRECISION,
    explanation TEXT NOT NULL,
    incident TEXT NOT NULL,
    state TEXT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at DOUBLE PRECISION,
    cleared_by TEXT,
    cleared_at DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_last_seen ON alerts (last_seen);
CREATE INDEX IF NOT EXISTS alerts_device ON alerts (device_id);
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at DOUBLE PRECISION,
    revoked_by TEXT
);
CREATE TABLE IF NOT EXISTS audit (
    id {autoid},
    at DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    old_value TEXT,
    new_value TEXT
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TABLE IF NOT EXISTS config (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
AUTO_ID = {"sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT", "postgresql": "BIGSERIAL PRIMARY KEY"}


class DatabaseError(ValueError):
    """The database URL cannot be used; the message says what is allowed."""


class NotFound(KeyError):
    """No record with that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


def iso(t: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC text (None stays None)."""
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat()


class Database:
    """A locked connection with the workbench schema; ``dialect`` is 'sqlite' or 'postgresql'."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            self.dialect = "sqlite"
            path = Path(url.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn: Any = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=10000")
        elif url.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            try:
                import psycopg
            except ImportError as exc:
                raise DatabaseError(f"PostgreSQL needs libpq (Debian: libpq5): {exc}") from None
            try:
                self._conn = psycopg.connect(url, autocommit=True)
            except psycopg.OperationalError as exc:
                where = _safe(url)
                raise DatabaseError(f"cannot connect to PostgreSQL at {where}: {exc}") from None
        else:
            raise DatabaseError(
                f"database URL {_safe(url)!r} is not understood: use sqlite:///PATH "
                "or postgresql://USER@HOST:PORT/DB"
            )
        self._lock = threading.RLock()
        self._depth = 0
        with self.transaction():
            for statement in SCHEMA.format(autoid=AUTO_ID[self.dialect]).split(";"):
                if statement.strip():
                    self.execute(statement)

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; how many rows it changed."""
        with self._lock:
            return self._conn.execute(self._sql(sql), tuple(params)).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row."""
        with self._lock:
            if self.dialect == "sqlite":
                self._conn.executemany(sql, rows)
            else:
                with self._conn.cursor() as cur:
                    cur.executemany(self._sql(sql), rows)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts keyed by column name."""
        with self._lock:
            cur = self._conn.execute(self._sql(sql), tuple(params))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def page(
        self,
        table: str,
        where: list[str],
        params: list[Any],
        order: str,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of rows matching every ``where`` clause, and how many match in all."""
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        with self._lock:
            total = self.query(f"SELECT COUNT(*) AS n FROM {table}{clause}", params)[0]["n"]
            rows = self.query(
                f"SELECT * FROM {table}{clause} ORDER BY {order} LIMIT ? OFFSET ?",
                [*params, limit, offset],
            )
        return rows, int(total)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """All statements inside commit together or not at all (the lock is held throughout);
        a transaction opened inside another is part of it."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._depth = 1
            try:
                if self.dialect == "postgresql":
                    with self._conn.transaction():
                        yield self
                    return
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


def _safe(url: str) -> str:
    """The URL without its password (for messages)."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user, _, password = credentials.partition(":")
    return f"{scheme}://{user}{':***' if password else ''}@{host}"


_open: dict[str, Database] = {}
_open_lock = threading.Lock()


def open_database(url: str) -> Database:
    """The process's shared connection to ``url`` (opened, and the schema made, on first use)."""
    with _open_lock:
        db = _open.get(url)
        if db is None:
            db = _open[url] = Database(url)
        return db
