"""Create and revoke tokens with an audit record, for the command line and the dashboard link."""

from __future__ import annotations

from typing import Any

from workbench.config import Settings
from workbench.security.audit import AuditLog
from workbench.security.tokens import TokenStore
from workbench.store.db import open_database


def create_token(
    settings: Settings, name: str, role: str, actor: str
) -> tuple[str, dict[str, Any]]:
    """A new token (its text exists only in the return value) and its public record; audited."""
    db = open_database(settings.database)
    token, record = TokenStore(db).create(name, role, actor)
    AuditLog(db).record(actor, "token.create", f"token {record['token_id']}", None, record)
    return token, record


def revoke_token(settings: Settings, token_id: str, actor: str) -> dict[str, Any]:
    """Revoke a token (audited the first time); its record after revocation."""
    db = open_database(settings.database)
    tokens = TokenStore(db)
    before = tokens.revoke(token_id, actor)
    after = tokens.get(token_id)
    if before["revoked_at"] is None:
        AuditLog(db).record(actor, "token.revoke", f"token {token_id}", before, after)
    return after
