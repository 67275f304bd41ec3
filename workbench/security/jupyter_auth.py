"""Workbench tokens in front of a Jupyter server (the Voilà dashboard): an identity provider.

A browser opens the dashboard's link with ``?token=wb_…`` (or types the token into the login
form); the token is checked against the workbench's token store and a signed cookie (HttpOnly,
SameSite=Lax, Secure over HTTPS) then carries the session. The cookie is checked against the store
on every request, so revoking the token locks its browsers out at once. Any role may view the
dashboard. A client that fails to sign in too often is refused for a minute.
"""

from __future__ import annotations

from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web
from traitlets import Dict, Type

from workbench.config import Settings
from workbench.security.throttle import SignInThrottle
from workbench.security.tokens import Principal, TokenStore, authenticate
from workbench.store.db import open_database
from workbench.voila_server.handlers import PlainErrors


def _user(principal: Principal) -> User:
    return User(
        username=principal.token_id,
        name=principal.name,
        display_name=f"{principal.name} ({principal.role})",
    )


class WorkbenchIdentityProvider(IdentityProvider):
    """Accepts workbench API tokens (``?token=``, ``Authorization: Bearer``, the login form)."""

    cookie_options = Dict({"samesite": "Lax"}, config=True, help="session cookie attributes")
    logout_handler_class = Type(
        default_value="workbench.voila_server.handlers.SignOut",
        klass=web.RequestHandler,
        config=True,
        help="signs out: clears the session cookie",
    )

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.throttle = SignInThrottle()
        base = self.login_handler_class  # Voilà passes its own; its errors must still say why
        self.login_handler_class = type(f"Plain{base.__name__}", (PlainErrors, base), {})

    def _check(self, handler: web.RequestHandler, token: str | None) -> User | None:
        """Who holds ``token`` (None if none was given or it fails); counts failures per client."""
        if not token:
            return None
        client = handler.request.remote_ip or "?"
        refusal = self.throttle.refusal(client)
        if refusal:
            raise web.HTTPError(429, refusal)
        principal = authenticate(token)
        if principal is None:
            self.throttle.failed(client)
            return None
        return _user(principal)

    async def get_user_token(self, handler: web.RequestHandler) -> User | None:
        return self._check(handler, self.get_token(handler))

    def get_user_cookie(self, handler: web.RequestHandler) -> User | None:
        user = super().get_user_cookie(handler)
        if not isinstance(user, User):
            return None
        store = TokenStore(open_database(Settings.from_env().database))
        return None if store.revoked_among({user.username}) else user

    def process_login_form(self, handler: web.RequestHandler) -> User | None:
        return self._check(handler, handler.get_argument("password", default=""))

    @property
    def auth_enabled(self) -> bool:
        return True
