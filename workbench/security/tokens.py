"""API tokens: created with a role, shown once, stored only as a SHA-256 hash, revocable.

A token reads ``wb_<id>_<secret>``: the id finds its row, the hash of the whole token is compared
in constant time. :func:`authenticate` is the one call anything else needs (the live API, or a
Jupyter Server identity provider in front of Voilà): token in, :class:`Principal` or None out.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from workbench.config import Settings
from workbench.store.db import Database, NotFound, iso, open_database

ROLES = ("viewer", "analyst", "admin")
"""Each role may do what the ones before it may: viewers read, analysts acknowledge alerts and
change detector settings, admins manage tokens and retention."""
PREFIX = "wb"
NAME_MAX = 64
NAME_PATTERN = re.compile(rf"[\w .,:;@/#()+\-]{{1,{NAME_MAX}}}")
"""A token name: letters, digits, spaces and a little punctuation; never control characters or
markup (names show in the audit log, in lists and on pages)."""


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to."""

    name: str
    role: str
    token_id: str

    def may(self, role: str) -> bool:
        """True when this principal's role is ``role`` or above."""
        return ROLES.index(self.role) >= ROLES.index(role)

    @property
    def label(self) -> str:
        """How the audit log names this principal."""
        return f"{self.name} ({self.role}, token {self.token_id})"


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_role(role: object) -> str:
    """The role, or a ValueError naming the roles there are."""
    if role not in ROLES:
        raise ValueError(f"role {role!r} does not exist; choose one of {', '.join(ROLES)}")
    return role  # type: ignore[return-value]


class TokenStore:
    """Tokens in a :class:`Database`; synchronous (run it off an event loop)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, name: str, role: str, created_by: str) -> tuple[str, dict[str, Any]]:
        """A new token (the only time its text exists) and its public record."""
        check_role(role)
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name.strip()):
            raise ValueError(
                f"token name {name!r}: use 1 to {NAME_MAX} letters, digits, spaces and "
                ". , : ; @ / # ( ) + - _ (no control characters or markup)"
            )
        token_id = secrets.token_hex(4)
        token = f"{PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        self.db.execute(
            "INSERT INTO tokens (token_id, name, role, hash, created_at, created_by) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (token_id, name.strip(), role, _hash(token), time.time(), created_by),
        )
        return token, self.get(token_id)

    def get(self, token_id: str) -> dict[str, Any]:
        """One token's public record (never its hash); NotFound if there is none."""
        rows = self.db.query(
            "SELECT token_id, name, role, created_at, created_by, revoked_at, revoked_by "
            "FROM tokens WHERE token_id = ?",
            (token_id,),
        )
        if not rows:
            raise NotFound(f"no token with id {token_id!r}")
        return {k: iso(v) if k.endswith("_at") else v for k, v in rows[0].items()}

    def list(self) -> list[dict[str, Any]]:
        """Every token's public record, oldest first."""
        ids = self.db.query("SELECT token_id FROM tokens ORDER BY created_at, token_id")
        return [self.get(r["token_id"]) for r in ids]

    def revoke(self, token_id: str, revoked_by: str) -> dict[str, Any]:
        """Make a token useless from now on; its record before revocation."""
        before = self.get(token_id)
        if before["revoked_at"] is None:
            self.db.execute(
                "UPDATE tokens SET revoked_at = ?, revoked_by = ? WHERE token_id = ?",
                (time.time(), revoked_by, token_id),
            )
        return before

    def revoked_among(self, token_ids: set[str]) -> set[str]:
        """Those of ``token_ids`` that are revoked (or no longer exist)."""
        if not token_ids:
            return set()
        rows = self.db.query(
            f"SELECT token_id FROM tokens WHERE revoked_at IS NULL AND token_id IN "
            f"({', '.join('?' * len(token_ids))})",
            sorted(token_ids),
        )
        return token_ids - {r["token_id"] for r in rows}

    def authenticate(self, token: str | None) -> Principal | None:
        """Who holds ``token``; None if it is missing, malformed, unknown or revoked."""
        if not token or not isinstance(token, str):
            return None
        parts = token.split("_", 2)
        if len(parts) != 3 or parts[0] != PREFIX:
            return None
        rows = self.db.query(
            "SELECT name, role, hash, revoked_at FROM tokens WHERE token_id = ?", (parts[1],)
        )
        if not rows or not hmac.compare_digest(rows[0]["hash"], _hash(token)):
            return None
        if rows[0]["revoked_at"] is not None:
            return None
        return Principal(rows[0]["name"], rows[0]["role"], parts[1])


def authenticate(token: str | None, settings: Settings | None = None) -> Principal | None:
    """Who holds ``token`` in the workbench's token store (``Settings.from_env()`` by default)."""
    settings = settings or Settings.from_env()
    return TokenStore(open_database(settings.database)).authenticate(token)
