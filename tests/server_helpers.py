"""Helpers for the live API tests: a real server on its own event-loop thread, HTTP and WebSocket
calls against it over loopback."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from workbench.broker import LocalBroker
from workbench.config import TOPIC_READINGS, Settings
from workbench.security.tokens import ROLES, TokenStore
from workbench.server.app import ServeConfig
from workbench.server.background import BackgroundServer
from workbench.store.db import Database
from workbench.streams.topics import ensure_topics
from workbench.streams.worker import WorkerTopics

T = TypeVar("T")


class RunningServer(BackgroundServer):
    """A background server with HTTP helpers; ``context`` is the TLS context clients use."""

    context: ssl.SSLContext | None = None

    def http(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON body) of one request."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.server.url + path, data=data, method=method)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def wait_for(self, what: str, check: Callable[[], T], timeout_s: float = 60) -> T:
        """Poll ``check`` until it returns something truthy."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            result = check()
            if result:
                return result
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


async def ws_connect(
    url: str, token: str | None = None, header: bool = True, context: ssl.SSLContext | None = None
) -> WebSocketClientConnection:
    """Open a WebSocket; the token goes in a Bearer header or, when ``header`` is False, in
    ``?token=``."""
    headers = {}
    if token is not None and header:
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None:
        url += ("&" if "?" in url else "?") + f"token={token}"
    return await websocket_connect(
        HTTPRequest(url, headers=headers, ssl_options=context), max_message_size=64 * 2**20
    )


async def ws_status(url: str, token: str | None = None) -> int:
    """The HTTP status a WebSocket handshake gets (101 when it is accepted)."""
    try:
        ws = await ws_connect(url, token)
    except Exception as exc:  # tornado raises HTTPClientError for refused handshakes
        return getattr(exc, "code", 0)
    ws.close()
    return 101


class Api:
    """A running server, its topics and one token per role (plus a revoked one)."""

    def __init__(self, settings: Settings, db: Database, config: ServeConfig) -> None:
        self.settings = settings
        self.topics = config.topics
        self.topic = config.topics.readings
        self.prefix = self.topic.removesuffix(TOPIC_READINGS)
        store = TokenStore(db)
        self.tokens = {role: store.create(f"test-{role}", role, "tests")[0] for role in ROLES}
        revoked, record = store.create("test-revoked", "admin", "tests")
        store.revoke(record["token_id"], "tests")
        self.tokens["revoked"] = revoked
        self.running = RunningServer(settings, config, db)
        self.server = self.running.server

    def http(self, method: str, path: str, role: str | None = "viewer", body: object = None):
        token = None if role is None else self.tokens.get(role, role)
        return self.running.http(method, path, token, body)


def start_api(broker: LocalBroker, tmp: Path, database: str | None = None, **config: object) -> Api:
    """A server on fresh topics (``t.api.<hex>.`` + the usual names) and store (SQLite in ``tmp``
    unless a database URL is given). Alerts come from workers on the same topics
    (``tests.worker_helpers.Namespace(…, prefix=api.prefix)``)."""
    if not broker.is_running():
        broker.start()
    topics = WorkerTopics.prefixed(f"t.api.{uuid.uuid4().hex[:8]}.")
    topics.ensure(broker.settings)
    ensure_topics(broker.settings, {f"{topics.readings}.truth": 1})
    db = Database(database or f"sqlite:///{tmp / 'api.db'}")
    serve = ServeConfig(
        port=0, topics=topics, group_id=f"g-{uuid.uuid4().hex[:6]}", start="earliest", **config
    )
    return Api(broker.settings, db, serve)
