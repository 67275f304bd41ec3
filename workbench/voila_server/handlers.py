"""The dashboard server's own handlers, put in place of Voilà's where Voilà trusts too much.

``ROUTES`` maps each Voilà handler class to its replacement; the app swaps them in its route
table, so a Voilà upgrade that renames a route is caught (the app refuses to start).
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import urlencode

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import ws_authenticated
from jupyter_server.base.handlers import JupyterHandler
from jupyter_server.base.websocket import WebSocketMixin
from jupyter_server.utils import url_path_join
from tornado import web
from voila.request_info_handler import RequestInfoSocketHandler
from voila.shutdown_kernel_handler import VoilaShutdownKernelHandler
from voila.tornado.handler import TornadoVoilaHandler
from voila.tornado.kernel_websocket_handler import VoilaKernelWebsocketHandler

from workbench.voila_server.kernels import VIEWER, KernelOwners

V1 = "v1.kernel.websocket.jupyter.org"
"""The kernel websocket protocol whose binary framing Voilà parses; the only one accepted."""


def _owners(handler: web.RequestHandler) -> KernelOwners:
    return handler.settings["workbench_kernel_owners"]


async def _authorize(handler: JupyterHandler, action: str) -> None:
    """403 unless the signed-in token owns the kernel the route names."""
    if not await ensure_async(
        handler.authorizer.is_authorized(handler, handler.current_user, action, "kernels")
    ):
        raise web.HTTPError(403, "this kernel belongs to another viewer")


class PlainErrors:
    """Errors as one line of text: Voilà has none of Jupyter Server's error page templates."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = getattr(exc, "log_message", None) or self._reason  # type: ignore[attr-defined]
        self.set_header("Content-Type", "text/plain; charset=utf-8")  # type: ignore[attr-defined]
        self.finish(f"{status_code}: {reason}\n")  # type: ignore[attr-defined]


class OwnedKernelChannels(PlainErrors, VoilaKernelWebsocketHandler):
    """Kernel channels for the kernel's owner only, in the v1 protocol only.

    Voilà 0.5 reads every binary reply as v1 framing; on a socket that negotiated the legacy
    protocol its first 8 bytes become an offset count near 10¹⁸, and the server hangs building
    that list. So a socket that does not offer v1 is refused before the upgrade.
    """

    async def get(self, *args: Any, **kwargs: Any) -> None:
        offered = self.request.headers.get("Sec-WebSocket-Protocol", "")
        if V1 not in (p.strip() for p in offered.split(",")):
            raise web.HTTPError(400, f"kernel channels need the {V1} subprotocol")
        await super().get(*args, **kwargs)  # authenticates; the authorizer checks the owner

    async def open(self, kernel_id: str) -> None:  # type: ignore[override]
        await super().open(kernel_id)
        _owners(self).opened(kernel_id, self)

    def on_close(self) -> None:
        _owners(self).closed(self.kernel_id, self)
        super().on_close()


class OwnedShutdown(PlainErrors, VoilaShutdownKernelHandler):
    """The page's shutdown-on-unload call, for the kernel's owner only."""

    @web.authenticated
    async def post(self, kernel_id: str) -> None:
        await _authorize(self, "write")
        await super().post(kernel_id)


class OwnedRequestInfo(PlainErrors, WebSocketMixin, RequestInfoSocketHandler, JupyterHandler):
    """Voilà's request-info socket (preheated kernels) behind sign-in, for the owner only.

    Voilà's own takes any connection, with no sign-in and no origin check.
    """

    @ws_authenticated
    async def get(self, *args: Any, **kwargs: Any) -> None:
        await _authorize(self, "read")
        await super().get(*args, **kwargs)


class DashboardPage(PlainErrors, TornadoVoilaHandler):
    """The dashboard page: a link's token is traded for the session cookie, then a clean URL;
    each page load is counted against its token's and the server's kernel limits."""

    @web.authenticated
    async def get(self, path: str | None = None) -> None:
        if self.get_query_argument("token", None) is not None:
            # Signed in by the token: the identity provider has set the session cookie. Drop
            # the token from the address bar, history and Referer.
            rest = {k: v[-1] for k, v in self.request.query_arguments.items() if k != "token"}
            query = f"?{urlencode(rest)}" if rest else ""
            self.redirect(url_path_join(self.base_url, self.request.path) + query)
            return
        owner = self.current_user.username
        owners = _owners(self)
        refusal = owners.reserve(owner)
        if refusal is not None:
            self.set_status(429)
            self.set_header("Retry-After", "60")
            self.finish(_refusal_page(refusal))
            return
        viewer = VIEWER.set(owner)
        try:
            await super().get(path)
        finally:
            VIEWER.reset(viewer)
            owners.release(owner)


class SignOut(JupyterHandler):
    """Clears the session cookie and goes back to the sign-in page (Jupyter's 500s in Voilà)."""

    def get(self) -> None:
        self.identity_provider.clear_login_cookie(self)
        self.redirect(url_path_join(self.base_url, "login"))


def _refusal_page(reason: str) -> str:
    return (
        "<!doctype html><meta charset=utf-8><title>Dashboard busy</title>"
        "<body style='font-family:sans-serif;max-width:40em;margin:4em auto'>"
        f"<h1>No dashboard for this page</h1><p>{escape(reason)}.</p></body>"
    )


ROUTES = {
    VoilaKernelWebsocketHandler: OwnedKernelChannels,
    VoilaShutdownKernelHandler: OwnedShutdown,
    RequestInfoSocketHandler: OwnedRequestInfo,
    TornadoVoilaHandler: DashboardPage,
}
"""Voilà's handler → the one served in its place."""
