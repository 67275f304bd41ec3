"""Voilà as the workbench deploys it: kernels owned by tokens and capped, abandoned kernels and
revoked tokens' sockets closed within a second or two, v1-only kernel sockets, secrets out of the
logs, and HTTPS when given a certificate.

``python -m workbench.voila_server NOTEBOOK [--Voila.* options]`` runs it; ``workbench.voila``
builds that command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

from tornado import ioloop, web
from traitlets import Float, Int, Type, Unicode, default
from voila.app import Voila
from voila.request_info_handler import RequestInfoSocketHandler

from workbench.config import Settings
from workbench.security.kernel_grants import Grant
from workbench.security.redact import redact, redact_handlers
from workbench.security.tls import server_context
from workbench.security.tokens import TokenStore
from workbench.store.db import NotFound, open_database
from workbench.voila_server.authorizer import KernelOwnerAuthorizer
from workbench.voila_server.handlers import ROUTES
from workbench.voila_server.kernels import KernelOwners, owning

GUARD_INTERVAL_S = 1.0
"""How often revoked tokens and abandoned kernels are looked for (s)."""
access_log = logging.getLogger("tornado.access")


def log_request(handler: web.RequestHandler) -> None:
    """One access-log line per request, with secrets in the URL blanked out."""
    status = handler.get_status()
    request = handler.request
    level = logging.INFO if status < 400 else logging.WARNING
    access_log.log(
        level,
        "%d %s %s (%s) %.1f ms",
        status,
        request.method,
        redact(request.uri or ""),
        request.remote_ip,
        1000 * request.request_time(),
    )


def swap_handlers(routes: list, replacements: dict[type, type]) -> list:
    """``routes`` with each handler class in ``replacements`` swapped for its replacement;
    RuntimeError if one of them is not routed (a Voilà upgrade moved it: never serve it
    unguarded)."""
    swapped, found = [], set()
    for route in routes:
        ours = replacements.get(route[1])
        if ours is not None:
            found.add(route[1])
            route = (route[0], ours, *route[2:])
        swapped.append(route)
    missing = set(replacements) - found
    if missing:
        names = ", ".join(sorted(c.__name__ for c in missing))
        raise RuntimeError(f"this Voilà no longer routes {names}; review workbench.voila_server")
    return swapped


class WorkbenchVoila(Voila):
    """Voilà with the workbench's kernel ownership, limits, guards and TLS."""

    name = "workbench-voila"
    certfile = Unicode("", config=True, help="PEM certificate: serve HTTPS only")
    keyfile = Unicode("", config=True, help="PEM private key of the certificate")
    kernels_per_token = Int(3, config=True, help="dashboard pages one token may have open")
    kernels_total = Int(20, config=True, help="dashboard pages served at once, all tokens")
    connect_s = Float(
        60.0, config=True, help="a kernel with no page connected this long is shut down (s)"
    )

    @default("authorizer_class")
    def _authorizer_class_default(self) -> type:
        return KernelOwnerAuthorizer

    identity_provider_class = Type(
        default_value="workbench.security.jupyter_auth.WorkbenchIdentityProvider",
        config=True,
        help="who may see the dashboard: holders of workbench tokens",
    )

    def initialize(self, argv: Any = None) -> None:
        super().initialize(argv)
        if bool(self.certfile) != bool(self.keyfile):
            raise ValueError("give both a certificate and its key for HTTPS, or neither")
        self.kernel_owners = KernelOwners(
            self.kernels_per_token, self.kernels_total, self.connect_s
        )
        self.tokens = TokenStore(open_database(Settings.from_env().database))

    def _grant_for(self, token_id: str) -> Grant:
        """The role and audit name a token's pages act under (a viewer's, if it is unknown)."""
        try:
            record = self.tokens.get(token_id)
        except NotFound:
            return Grant("viewer", f"unknown token {token_id}")
        return Grant(record["role"], f"{record['name']} ({record['role']}, token {token_id})")

    def init_settings(self) -> dict:
        settings = super().init_settings()
        owning(self.kernel_manager, self.kernel_owners, self._grant_for)
        settings["workbench_kernel_owners"] = self.kernel_owners
        settings["log_function"] = log_request
        return settings

    def init_handlers(self) -> list:
        return swap_handlers(super().init_handlers(), ROUTES)

    @property
    def display_url(self) -> str:
        url = super().display_url
        return url.replace("http://", "https://", 1) if self.certfile else url

    def listen(self) -> None:
        if self.certfile:
            context = server_context(self.certfile, self.keyfile)
            self.app.listen = functools.partial(self.app.listen, ssl_options=context)
        ioloop.PeriodicCallback(self._guard, GUARD_INTERVAL_S * 1000).start()
        redact_handlers()  # logging is all set up by now
        super().listen()

    async def _guard(self) -> None:
        """Close revoked tokens' sockets and kernels; shut down abandoned kernels."""
        owners = self.kernel_owners
        manager = self.kernel_manager
        for kernel_id in owners.kernel_ids():
            if kernel_id not in manager:
                owners.forget(kernel_id)  # culled or died
        for kernel_id in list(RequestInfoSocketHandler._cache):
            if kernel_id not in manager:
                del RequestInfoSocketHandler._cache[kernel_id]
        try:
            revoked = await asyncio.to_thread(self.tokens.revoked_among, owners.holders())
        except Exception as exc:  # the store is away: try again next tick
            self.log.warning("could not check for revoked tokens: %s", exc)
            revoked = set()
        for kernel_id in owners.owned_by(revoked):
            self.log.info("token revoked: shutting down its kernel %s", kernel_id)
            for socket in owners.sockets(kernel_id):
                socket.close(1008, "token revoked")
            await self._shutdown(kernel_id)
        for kernel_id in owners.abandoned():
            self.log.info(
                "no page connected to kernel %s for %.0f s: shutting it down",
                kernel_id,
                owners.connect_s,
            )
            await self._shutdown(kernel_id)

    async def _shutdown(self, kernel_id: str) -> None:
        self.kernel_owners.forget(kernel_id)
        with contextlib.suppress(KeyError, RuntimeError):  # already gone
            await self.kernel_manager.shutdown_kernel(kernel_id)


main = WorkbenchVoila.launch_instance
