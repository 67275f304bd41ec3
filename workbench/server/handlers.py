"""HTTP and WebSocket handlers of the live API; every one authenticates before doing anything.

A token comes as ``Authorization: Bearer …`` (or ``?token=…`` on a WebSocket, for browsers): 401
when it is missing, unknown or revoked, 403 when its role may not act. Bad input is a 400 whose
message says what is wrong and what is allowed; every change is written to the audit log.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

import msgspec
from tornado.web import HTTPError, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from workbench.alerts.model import SEVERITIES
from workbench.models.ensemble import SPECIFICITY
from workbench.security.audit import AuditQuery
from workbench.security.redact import redact
from workbench.security.tokens import ROLES, Principal
from workbench.server.hub import Client, ReadingFilter
from workbench.store.alerts import STATES, AlertQuery, LifecycleError
from workbench.store.db import NotFound
from workbench.store.lifecycle import act_on_alert

if TYPE_CHECKING:
    from workbench.server.app import ApiServer

_encode = msgspec.json.Encoder().encode
MAX_PAGE = 1000
MAX_OFFSET = 10**9
ARG_MAX = 200
"""Longest query value accepted."""


class Base(RequestHandler):
    """Authentication, argument parsing and JSON errors shared by every handler."""

    roles: ClassVar[dict[str, str]] = {}
    """HTTP method → least role that may call it (default: viewer)."""
    query_token = False
    """Accept ``?token=`` (WebSockets only: browsers cannot set headers there)."""

    def initialize(self, server: ApiServer) -> None:
        self.server = server
        self.principal: Principal | None = None

    async def prepare(self) -> None:
        header = self.request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        if token is None and self.query_token:
            token = self.get_query_argument("token", None)
        client = self.request.remote_ip or "?"
        refusal = self.server.throttle.refusal(client) if token else None
        if refusal:
            self.set_header("Retry-After", f"{self.server.throttle.retry_after(client):.0f}")
            raise HTTPError(429, refusal)
        principal = await self.server.in_db(self.server.tokens.authenticate, token)
        if principal is None:
            if token:
                self.server.throttle.failed(client)
            self.set_header("WWW-Authenticate", 'Bearer realm="workbench"')
            why = "no token given" if not token else "the token is unknown or revoked"
            raise HTTPError(401, f"{why}: send 'Authorization: Bearer <token>'")
        role = self.roles.get(self.request.method or "GET", "viewer")
        if not principal.may(role):
            raise HTTPError(
                403, f"this needs the {role} role or above; {principal.name} is a {principal.role}"
            )
        self.principal = principal

    def _request_summary(self) -> str:
        """What tornado logs for a request, with any ``?token=`` value blanked out."""
        uri = redact(self.request.uri or "")
        return f"{self.request.method} {uri} ({self.request.remote_ip})"

    @property
    def actor(self) -> str:
        assert self.principal is not None
        return self.principal.label

    @property
    def principal_role(self) -> str:
        assert self.principal is not None
        return self.principal.role

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, HTTPError) and exc.log_message else None
        self.set_header("Content-Type", "application/json")
        self.finish(_encode({"error": message or self._reason}))

    def reply(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(_encode(body))

    def body_json(self) -> Any:
        try:
            return json.loads(self.request.body or b"null")
        except ValueError as exc:
            raise HTTPError(400, f"the body is not JSON: {exc}") from None

    def text_arg(self, name: str) -> str | None:
        value = self.get_query_argument(name, None)
        if value is not None and len(value) > ARG_MAX:
            raise HTTPError(400, f"{name}: at most {ARG_MAX} characters")
        return value

    def int_arg(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.text_arg(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise HTTPError(400, f"{name}={raw!r} is not a whole number") from None
        if not low <= value <= high:
            raise HTTPError(400, f"{name}={value} is out of range: allowed {low} to {high}")
        return value

    def time_arg(self, name: str) -> float | None:
        raw = self.text_arg(name)
        if raw is None:
            return None
        try:
            t = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
        except ValueError:
            raise HTTPError(
                400, f"{name}={raw!r} is not an ISO 8601 time such as 2024-01-15T08:00:00Z"
            ) from None
        return (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp()

    def list_arg(self, name: str, allowed: tuple[str, ...] | None = None) -> tuple[str, ...]:
        values = tuple(
            v.strip() for raw in self.get_query_arguments(name) for v in raw.split(",") if v.strip()
        )
        if any(len(v) > ARG_MAX for v in values):
            raise HTTPError(400, f"{name}: at most {ARG_MAX} characters a value")
        bad = [v for v in values if allowed is not None and v not in allowed]
        if bad:
            raise HTTPError(400, f"{name}={bad[0]!r} is not one of {', '.join(allowed or ())}")
        return values

    def page(self) -> tuple[int, int]:
        return self.int_arg("limit", 100, 1, MAX_PAGE), self.int_arg("offset", 0, 0, MAX_OFFSET)


class NotFoundHandler(Base):
    """Any other path: authenticated like the rest, then 404."""

    async def get(self, *_: str) -> None:
        raise HTTPError(404, f"no such endpoint {self.request.path}; see /api/openapi.json")

    post = put = delete = patch = get


class OpenApiHandler(Base):
    async def get(self) -> None:
        self.reply(self.server.openapi)


class MetricsHandler(Base):
    async def get(self) -> None:
        self.reply(self.server.feeds.metrics())


class DevicesHandler(Base):
    async def get(self) -> None:
        types = self.list_arg("type", self.server.profiles.type_names)
        status = self.list_arg("status", ("ok", "alerting"))
        limit, offset = self.page()
        devices = [
            d
            for d in await self.server.feeds.devices()
            if (not types or d["device_type"] in types) and (not status or d["status"] in status)
        ]
        devices.sort(key=lambda d: d["device_id"])
        self.reply(
            {
                "items": devices[offset : offset + limit],
                "total": len(devices),
                "limit": limit,
                "offset": offset,
            }
        )


class AnomaliesHandler(Base):
    async def get(self) -> None:
        limit, offset = self.page()
        query = AlertQuery(
            since=self.time_arg("since"),
            until=self.time_arg("until"),
            severities=self.list_arg("severity", SEVERITIES),
            kinds=self.list_arg("kind", SPECIFICITY),
            devices=self.list_arg("device"),
            states=self.list_arg("state", STATES),
            limit=limit,
            offset=offset,
        )
        items, total = await self.server.in_db(self.server.alerts.query, query)
        self.reply({"items": items, "total": total, "limit": limit, "offset": offset})


class AnomalyHandler(Base):
    async def get(self, alert_id: str) -> None:
        try:
            self.reply(await self.server.in_db(self.server.alerts.get, alert_id))
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from None


class AnomalyActionHandler(Base):
    """POST /api/anomalies/{id}/ack or /clear."""

    roles: ClassVar[dict[str, str]] = {"POST": "analyst"}

    async def post(self, alert_id: str, action: str) -> None:
        try:
            self.reply(
                await self.server.in_db(act_on_alert, self.server.db, alert_id, action, self.actor)
            )
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from None
        except LifecycleError as exc:
            raise HTTPError(409, str(exc)) from None


class SettingsHandler(Base):
    roles: ClassVar[dict[str, str]] = {"PUT": "analyst"}

    async def get(self) -> None:
        self.reply(self.server.feeds.settings_in_force())

    async def put(self) -> None:
        body = self.body_json()
        try:
            old, new = await self.server.feeds.change_settings(
                body, self.actor, self.principal_role
            )
        except (ValueError, TypeError) as exc:
            raise HTTPError(400, str(exc)) from None
        if new:
            await self.server.in_db(
                self.server.audit.record, self.actor, "settings.update", "detector settings",
                old, new,
            )  # fmt: skip
        self.reply(self.server.feeds.settings_in_force())


class RetentionHandler(Base):
    roles: ClassVar[dict[str, str]] = {"PUT": "admin"}

    async def get(self) -> None:
        days = await self.server.in_db(self.server.alerts.retention_days)
        self.reply({"days": days})

    async def put(self) -> None:
        body = self.body_json()
        if not isinstance(body, dict) or set(body) != {"days"}:
            raise HTTPError(400, 'the body must be {"days": N}, N whole days from 1 to 3650')

        def change() -> dict[str, int]:
            with self.server.db.transaction():
                old = self.server.alerts.set_retention_days(body["days"])
                if old != body["days"]:
                    self.server.audit.record(
                        self.actor, "retention.update", "alert retention (days)", old, body["days"]
                    )
            return {"days": body["days"], "deleted": self.server.alerts.enforce_retention()}

        try:
            self.reply(await self.server.in_db(change))
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None


class AuditHandler(Base):
    roles: ClassVar[dict[str, str]] = {"GET": "admin"}

    async def get(self) -> None:
        limit, offset = self.page()
        query = AuditQuery(
            since=self.time_arg("since"),
            until=self.time_arg("until"),
            actor=self.text_arg("actor"),
            action=self.text_arg("action"),
            limit=limit,
            offset=offset,
        )
        items, total = await self.server.in_db(self.server.audit.query, query)
        self.reply({"items": items, "total": total, "limit": limit, "offset": offset})


class TokensHandler(Base):
    roles: ClassVar[dict[str, str]] = {"GET": "admin", "POST": "admin"}

    async def get(self) -> None:
        self.reply({"items": await self.server.in_db(self.server.tokens.list)})

    async def post(self) -> None:
        body = self.body_json()
        if not isinstance(body, dict) or set(body) - {"name", "role"} or "name" not in body:
            raise HTTPError(
                400, f'the body must be {{"name": TEXT, "role": ONE OF {", ".join(ROLES)}}}'
            )

        def create() -> tuple[str, dict[str, Any]]:
            token, record = self.server.tokens.create(
                body["name"], body.get("role", "viewer"), self.actor
            )
            self.server.audit.record(self.actor, "token.create", f"token {record['token_id']}",
                                     None, record)  # fmt: skip
            return token, record

        try:
            token, record = await self.server.in_db(create)
        except ValueError as exc:
            raise HTTPError(400, str(exc)) from None
        self.reply({"token": token, **record}, status=201)


class TokenHandler(Base):
    roles: ClassVar[dict[str, str]] = {"DELETE": "admin"}

    async def delete(self, token_id: str) -> None:
        def revoke() -> dict[str, Any]:
            before = self.server.tokens.revoke(token_id, self.actor)
            after = self.server.tokens.get(token_id)
            if before["revoked_at"] is None:
                self.server.audit.record(
                    self.actor, "token.revoke", f"token {token_id}", before, after
                )
            return after

        try:
            self.reply(await self.server.in_db(revoke))
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from None
        await self.server.disconnect_revoked()


class Socket(Base, WebSocketHandler):
    """A channel of live messages; the client's writer and queue live in the hub."""

    channel = "alerts"
    query_token = True

    def check_origin(self, origin: str) -> bool:
        return True  # authentication is by token, never by cookie: any origin may connect

    def wanted(self) -> ReadingFilter | None:
        return None

    async def get(self, *args: Any, **kwargs: Any) -> None:
        self.filter = self.wanted()
        await super().get(*args, **kwargs)

    def open(self, *_: str) -> None:
        assert self.principal is not None
        self.client: Client = self.server.hub.add(
            self.channel,
            self._send,
            self.principal.name,
            self.filter,
            self.principal.token_id,
            self.close,
        )

    async def _send(self, message: bytes) -> None:
        if self.ws_connection is None:
            raise WebSocketClosedError()
        await self.write_message(message)

    def on_message(self, message: str | bytes) -> None:
        """Clients only listen; anything they send is ignored."""

    def on_close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            self.server.hub.remove(client)


class ReadingsSocket(Socket):
    """ws://HOST:PORT/?device=ID,…&type=TYPE,…: live readings, one message per batch."""

    channel = "readings"

    def wanted(self) -> ReadingFilter:
        return ReadingFilter(
            frozenset(self.list_arg("device")),
            frozenset(self.list_arg("type", self.server.profiles.type_names)),
        )


class MetricsSocket(Socket):
    channel = "metrics"


class AlertsSocket(Socket):
    channel = "alerts"
