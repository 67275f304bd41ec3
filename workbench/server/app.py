"""``workbench serve``: the live API — WebSocket channels, REST, OpenAPI — on one Tornado server.

One server process follows the workers' output topics (alert states into the store and to the
clients, worker figures, settings) and the readings for the readings channel, with a database
thread for the store, a once-a-second metrics broadcast and an hourly retention sweep. TLS is on
when a certificate and key are given.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from workbench.config import ConfigError, Settings
from workbench.profiles.compile import CompiledProfiles
from workbench.security.audit import AuditLog
from workbench.security.pseudonym import Pseudonymiser, pseudonymiser_from_env
from workbench.security.throttle import FAILURES, SignInThrottle
from workbench.security.tls import check_tls_files, server_context, tls_files_from_env
from workbench.security.tokens import TokenStore
from workbench.server import handlers as h
from workbench.server.feeds import LiveFeeds
from workbench.server.hub import DEFAULT_QUEUE, Hub
from workbench.server.openapi import openapi
from workbench.store.alerts import AlertStore
from workbench.store.db import Database, open_database
from workbench.streams.worker import WorkerTopics

log = logging.getLogger(__name__)
T = TypeVar("T")
DEFAULT_PORT = 8765
METRICS_INTERVAL_S = 1.0
RETENTION_INTERVAL_S = 3600.0
REVOCATION_CHECK_S = 10.0
"""How often open sockets' tokens are checked (a revocation from the command line)."""
_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True)
class ServeConfig:
    """Where and how the API listens, and what its feeds read."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    """0 picks a free port (tests)."""
    certfile: Path | None = None
    keyfile: Path | None = None
    max_queue: int = DEFAULT_QUEUE
    """Messages each WebSocket client may have waiting before the oldest is dropped."""
    topics: WorkerTopics = field(default_factory=WorkerTopics)
    """The topics the workers read and write."""
    group_id: str = "workbench-serve"
    start: str = "latest"
    pseudonymiser: Pseudonymiser | None = None
    sign_in_failures: int = FAILURES
    """Failed sign-ins a client may make in a minute before it is refused for a minute."""
    profiles: CompiledProfiles | None = None
    """The fleet's device types and wire format (None: the process's profiles)."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is outside 0–65535")
        check_tls_files(self.certfile, self.keyfile)
        if self.sign_in_failures < 1:
            raise ConfigError(f"sign_in_failures={self.sign_in_failures}: allow at least 1")

    @classmethod
    def from_env(cls, **overrides: Any) -> ServeConfig:
        """From ``WORKBENCH_SERVE_*``, ``WORKBENCH_TLS_*``, ``WORKBENCH_WS_QUEUE`` and the
        pseudonymisation key variables, then the non-None ``overrides``."""
        env = os.environ
        certfile, keyfile = tls_files_from_env()
        values: dict[str, Any] = {
            "host": env.get("WORKBENCH_SERVE_HOST") or "127.0.0.1",
            "port": _int(env, "WORKBENCH_SERVE_PORT", DEFAULT_PORT),
            "max_queue": _int(env, "WORKBENCH_WS_QUEUE", DEFAULT_QUEUE),
            "certfile": certfile,
            "keyfile": keyfile,
            "pseudonymiser": pseudonymiser_from_env(),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def scheme(self) -> str:
        """'https' with TLS, else 'http'."""
        return "https" if self.certfile else "http"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context, or None without a certificate."""
        if self.certfile is None or self.keyfile is None:
            return None
        return server_context(self.certfile, self.keyfile)


def freeze_startup_objects() -> None:
    """Exempt everything alive now (modules, classes, models: ~140,000 objects) from the cyclic
    garbage collector's full passes, which otherwise stall every thread, the event loop's too, for
    up to ~300 ms under load; objects made later are collected as usual. Call once, after start."""
    gc.collect()
    gc.freeze()


def _int(env: os._Environ[str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


class ApiServer:
    """The API and its feeds; ``await start()`` on an event loop, ``await stop()`` to end."""

    def __init__(self, settings: Settings, config: ServeConfig, db: Database | None = None) -> None:
        self.settings = settings
        self.config = config
        self.db = db or open_database(settings.database)
        self.alerts = AlertStore(self.db)
        self.tokens = TokenStore(self.db)
        self.throttle = SignInThrottle(config.sign_in_failures)
        self.audit = AuditLog(self.db)
        self.hub = Hub(config.max_queue)
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="workbench-db")
        self.feeds = LiveFeeds(
            settings,
            self.alerts,
            self.hub,
            self._db_thread,
            pseudonymiser=config.pseudonymiser,
            topics=config.topics,
            group_id=config.group_id,
            start=config.start,
            profiles=config.profiles,
        )
        self.profiles = self.feeds.profiles
        """The device types the API accepts in filters and describes, with their metrics."""
        self.openapi = openapi(self.profiles)
        self.port = config.port
        self._http: HTTPServer | None = None
        self._tasks: list[asyncio.Task] = []

    async def in_db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call on the database thread (never on the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    def application(self) -> Application:
        """The routes."""
        s = {"server": self}
        return Application(
            [
                (r"/", h.ReadingsSocket, s),
                (r"/metrics", h.MetricsSocket, s),
                (r"/alerts", h.AlertsSocket, s),
                (r"/api/openapi\.json", h.OpenApiHandler, s),
                (r"/api/metrics", h.MetricsHandler, s),
                (r"/api/devices", h.DevicesHandler, s),
                (r"/api/anomalies", h.AnomaliesHandler, s),
                (r"/api/anomalies/([^/]+)", h.AnomalyHandler, s),
                (r"/api/anomalies/([^/]+)/(ack|clear)", h.AnomalyActionHandler, s),
                (r"/api/settings", h.SettingsHandler, s),
                (r"/api/retention", h.RetentionHandler, s),
                (r"/api/audit", h.AuditHandler, s),
                (r"/api/tokens", h.TokensHandler, s),
                (r"/api/tokens/([^/]+)", h.TokenHandler, s),
            ],
            default_handler_class=h.NotFoundHandler,
            default_handler_args=s,
            websocket_ping_interval=10,
            websocket_ping_timeout=10,
            websocket_max_message_size=64 * 1024,
        )

    @property
    def url(self) -> str:
        """Base URL of the REST API (http or https)."""
        return f"{self.config.scheme}://{self._url_host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Base URL of the WebSocket channels (ws or wss)."""
        return self.url.replace("http", "ws", 1)

    @property
    def _url_host(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in ("", "0.0.0.0") else f"[{host}]" if ":" in host else host

    async def start(self) -> None:
        """Listen, start the feeds, the metrics broadcast and the retention sweep."""
        sockets = bind_sockets(self.config.port, self.config.host)
        self.port = sockets[0].getsockname()[1]
        self._http = HTTPServer(self.application(), ssl_options=self.config.ssl_context())
        self._http.add_sockets(sockets)
        self.feeds.start()
        self._tasks = [
            asyncio.ensure_future(self._broadcast_metrics()),
            asyncio.ensure_future(self._sweep_retention()),
            asyncio.ensure_future(self._watch_revocations()),
        ]

    async def _broadcast_metrics(self) -> None:
        while True:
            try:
                message = {"type": "metrics", "at": time.time(), **self.feeds.metrics()}
                self.hub.publish("metrics", _encode(message))
            except Exception:  # one bad second must not end the channel for good
                log.exception("metrics broadcast failed; trying again in a second")
            await asyncio.sleep(METRICS_INTERVAL_S)

    async def _sweep_retention(self) -> None:
        while True:
            try:
                deleted = await self.in_db(self.alerts.enforce_retention)
                if deleted:
                    log.info("retention: deleted %d alerts", deleted)
            except Exception:
                log.exception("retention sweep failed; trying again in an hour")
            await asyncio.sleep(RETENTION_INTERVAL_S)

    async def disconnect_revoked(self) -> int:
        """Close the sockets whose tokens have been revoked since they connected; how many."""
        clients = self.hub.all()
        revoked = await self.in_db(self.tokens.revoked_among, {c.token_id for c in clients})
        gone = [c for c in clients if c.token_id in revoked]
        for client in gone:
            client.disconnect(4001, "token revoked")
        return len(gone)

    async def _watch_revocations(self) -> None:
        while True:
            await asyncio.sleep(REVOCATION_CHECK_S)
            try:
                await self.disconnect_revoked()
            except Exception:
                log.exception("checking open sockets' tokens failed; trying again")

    async def stop(self) -> None:
        """Stop listening, close clients, stop the feeds (they commit what they handled)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._http is not None:
            self._http.stop()
        for client in self.hub.all():
            client.disconnect(1001, "server stopping")
        self.hub.close()
        if self._http is not None:
            await self._http.close_all_connections()
        await self.feeds.stop()
        self._db_thread.shutdown(wait=True)
