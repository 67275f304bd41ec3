"""A viewer of the dashboard server without a browser: page loads with a cookie jar, REST calls,
and raw kernel-channel sockets in the v1 or the legacy protocol (as a hostile client would)."""

from __future__ import annotations

import http.cookiejar
import json
import re
import ssl
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from jupyter_server.services.kernels.connection.base import (
    deserialize_msg_from_ws_v1,
    serialize_msg_to_ws_v1,
)
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

V1 = "v1.kernel.websocket.jupyter.org"
KERNEL_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
UNVERIFIED = ssl.create_default_context()
UNVERIFIED.check_hostname, UNVERIFIED.verify_mode = False, ssl.CERT_NONE


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Reply:
    status: int
    url: str
    headers: Any
    body: str


@dataclass
class Viewer:
    """One browser's worth of state: a base URL and a cookie jar."""

    base: str
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def request(
        self,
        path: str,
        method: str = "GET",
        follow: bool = True,
        timeout: float = 90,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        handlers: list[Any] = [
            urllib.request.HTTPCookieProcessor(self.jar),
            urllib.request.HTTPSHandler(context=UNVERIFIED),
        ]
        if not follow:
            handlers.append(_NoRedirect())
        opener = urllib.request.build_opener(*handlers)
        data = b"" if method == "POST" else None
        request = urllib.request.Request(
            self.base + path, method=method, data=data, headers=headers or {}
        )
        try:
            with opener.open(request, timeout=timeout) as response:
                return Reply(
                    response.status, response.url, response.headers, response.read().decode()
                )
        except urllib.error.HTTPError as error:
            return Reply(
                error.code, error.url, error.headers, error.read().decode(errors="replace")
            )

    def open_page(self, token: str) -> str:
        """Load the dashboard with the link's token (no JavaScript runs); its kernel's id."""
        page = self.request(f"/?token={token}")
        assert page.status == 200, (page.status, page.body[:500])
        return KERNEL_ID.findall(page.body)[0]

    @property
    def cookie(self) -> str:
        return "; ".join(f"{c.name}={c.value}" for c in self.jar)

    async def channels(self, kernel_id: str, v1: bool = True) -> WebSocketClientConnection:
        """The kernel's channels socket, offering the v1 protocol or none (legacy)."""
        scheme = "wss" if self.base.startswith("https") else "ws"
        url = f"{scheme}{self.base[self.base.index(':') :]}/api/kernels/{kernel_id}/channels"
        request = HTTPRequest(
            f"{url}?session_id={uuid.uuid4().hex}",
            headers={"Cookie": self.cookie},
            validate_cert=False,
        )
        return await websocket_connect(request, subprotocols=[V1] if v1 else None)


def message(msg_type: str, content: dict) -> dict:
    """A Jupyter shell message."""
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": msg_type,
        "username": "viewer",
        "session": uuid.uuid4().hex,
        "version": "5.3",
        "date": "",
    }
    return {"header": header, "parent_header": {}, "metadata": {}, "content": content}


def send(socket: WebSocketClientConnection, msg: dict) -> None:
    """Send ``msg`` on the shell channel in the socket's protocol."""
    if socket.selected_subprotocol == V1:
        parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata")]
        parts.append(json.dumps(msg["content"]).encode())
        socket.write_message(serialize_msg_to_ws_v1(parts, "shell"), binary=True)
    else:
        socket.write_message(json.dumps({**msg, "channel": "shell", "buffers": []}))


async def receive(socket: WebSocketClientConnection, msg_type: str, timeout_s: float) -> dict:
    """The next message of ``msg_type`` from the kernel (other messages are skipped)."""
    import asyncio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(socket.read_message(), deadline - time.monotonic())
        if raw is None:
            raise ConnectionError(f"socket closed ({socket.close_code}: {socket.close_reason})")
        if isinstance(raw, bytes):
            _channel, parts = deserialize_msg_from_ws_v1(raw)
            header, content = json.loads(parts[0]), json.loads(parts[3])
        else:
            decoded = json.loads(raw)
            header, content = decoded["header"], decoded["content"]
        if header["msg_type"] == msg_type:
            return content
    raise TimeoutError(f"no {msg_type} within {timeout_s:.0f} s")
