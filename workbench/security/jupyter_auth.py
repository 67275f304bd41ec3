"""Workbench tokens in front of a Jupyter server (the Voilà dashboard): an identity provider.

A browser opens the dashboard's link with ``?token=wb_…`` (or types the token into the login
form); the token is checked against the workbench's token store and a signed cookie then carries
the session. The cookie is checked against the store on every request, so revoking the token
locks its browsers out at once. Any role may view the dashboard.
"""

from __future__ import annotations

from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web

from workbench.config import Settings
from workbench.security.tokens import Principal, TokenStore, authenticate
from workbench.store.db import open_database


def _user(principal: Principal) -> User:
    return User(
        username=principal.token_id,
        name=principal.name,
        display_name=f"{principal.name} ({principal.role})",
    )


class WorkbenchIdentityProvider(IdentityProvider):
    """Accepts workbench API tokens (``?token=``, ``Authorization: Bearer``, the login form)."""

    async def get_user_token(self, handler: web.RequestHandler) -> User | None:
        principal = authenticate(self.get_token(handler))
        return None if principal is None else _user(principal)

    def get_user_cookie(self, handler: web.RequestHandler) -> User | None:
        user = super().get_user_cookie(handler)
        if not isinstance(user, User):
            return None
        store = TokenStore(open_database(Settings.from_env().database))
        return None if store.revoked_among({user.username}) else user

    def process_login_form(self, handler: web.RequestHandler) -> User | None:
        principal = authenticate(handler.get_argument("password", default=""))
        return None if principal is None else _user(principal)

    @property
    def auth_enabled(self) -> bool:
        return True
