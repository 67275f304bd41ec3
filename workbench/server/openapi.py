"""The REST API's OpenAPI 3.0 description, served at ``/api/openapi.json`` (and fuzzed in tests).

Device types and their metrics come from the fleet's profiles, so the description is that fleet's.
"""

from __future__ import annotations

from typing import Any

from workbench.alerts.model import SEVERITIES
from workbench.models.ensemble import SPECIFICITY
from workbench.profiles.active import active
from workbench.profiles.model import Profiles
from workbench.security.tokens import NAME_MAX, NAME_PATTERN, ROLES
from workbench.store.alerts import MAX_RETENTION_DAYS, STATES

ERRORS = {
    "400": "bad input: the message says what is wrong and what is allowed",
    "401": "no token, or an unknown or revoked one",
    "403": "the token's role may not do this",
    "404": "no such record",
    "409": "the alert is not in a state this change may start from",
}
NUMBER_OR_NULL = {"type": "number", "nullable": True}
TEXT_OR_NULL = {"type": "string", "nullable": True}


def _obj(properties: dict[str, Any], required: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(properties)
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: str) -> dict[str, Any]:
    return _obj(
        {
            "items": {"type": "array", "items": _ref(item)},
            "total": {"type": "integer"},
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
        }
    )


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _list_of(values: tuple[str, ...]) -> dict[str, Any]:
    return {"type": "string", "description": f"comma-separated: {', '.join(values)}"}


PAGING = [
    _query("limit", "page size", {"type": "integer", "minimum": 1, "maximum": 1000}),
    _query("offset", "items to skip", {"type": "integer", "minimum": 0, "maximum": 10**9}),
]
TIME = {"type": "string", "format": "date-time"}


def _op(summary: str, role: str, ok: dict[str, Any] | None, codes: str, **extra: Any) -> dict:
    responses: dict[str, Any] = {
        c: {"description": ERRORS[c], "content": {"application/json": {"schema": _ref("Error")}}}
        for c in ("401", "403", *codes.split())
        if c
    }
    status = extra.pop("status", "200")
    responses[status] = {"description": "done"}
    if ok is not None:
        responses[status]["content"] = {"application/json": {"schema": ok}}
    return {
        "summary": summary,
        "description": f"Role: {role} or above.",
        "responses": responses,
        **extra,
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _last_reading(profiles: Profiles) -> dict[str, Any]:
    """A device's latest reading: common fields by name, then its type's metrics."""
    metrics = "; ".join(
        f"{t.name}: {', '.join(profiles.label(m) for m in t.metric_names)}" for t in profiles.types
    )
    return {
        **_obj(
            {
                "device_type": {"type": "string", "enum": list(profiles.type_names)},
                "device_id": {"type": "string"},
                "ts": TIME,
                "seq": {"type": "integer", "nullable": True},
                "lat": NUMBER_OR_NULL,
                "lon": NUMBER_OR_NULL,
                "firmware": TEXT_OR_NULL,
            }
        ),
        "description": "the latest reading; fields the fleet's profile does not map are null, "
        f"and each metric of the device's type is a property ({metrics})",
        "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "boolean"}]},
    }


def openapi(profiles: Profiles | None = None) -> dict[str, Any]:
    """The OpenAPI document of the API over the fleet in ``profiles`` (default: the process's)."""
    profiles = profiles or active().profiles
    device_types = list(profiles.type_names)
    alert = _obj(
        {
            "alert_id": {"type": "string"},
            "device_id": {"type": "string"},
            "device_type": {"type": "string", "enum": device_types},
            "kind": {"type": "string"},
            "metric": TEXT_OR_NULL,
            "severity": {"type": "string", "enum": list(SEVERITIES)},
            "score": {"type": "number", "description": "peak anomaly score, 0–1"},
            "first_seen": TIME,
            "last_seen": TIME,
            "readings": {"type": "integer", "description": "anomalous readings so far"},
            "observed": NUMBER_OR_NULL,
            "expected_low": NUMBER_OR_NULL,
            "expected_high": NUMBER_OR_NULL,
            "explanation": {"type": "string"},
            "incident": {"type": "string", "enum": ["active", "closed"]},
            "state": {"type": "string", "enum": list(STATES)},
            "acknowledged_by": TEXT_OR_NULL,
            "acknowledged_at": {**TIME, "nullable": True},
            "cleared_by": TEXT_OR_NULL,
            "cleared_at": {**TIME, "nullable": True},
            "updated_at": TIME,
        }
    )
    token = _obj(
        {
            "token_id": {"type": "string"},
            "name": {"type": "string"},
            "role": {"type": "string", "enum": list(ROLES)},
            "created_at": TIME,
            "created_by": {"type": "string"},
            "revoked_at": {**TIME, "nullable": True},
            "revoked_by": TEXT_OR_NULL,
        }
    )
    device = _obj(
        {
            "device_id": {"type": "string"},
            "device_type": {"type": "string", "enum": device_types},
            "status": {"type": "string", "enum": ["ok", "alerting"]},
            "active_alerts": {"type": "integer"},
            "worst_severity": {"type": "string", "enum": list(SEVERITIES), "nullable": True},
            "last_seen": TIME,
            "last_reading": _last_reading(profiles),
            "units": {
                "type": "object",
                "description": "each metric of the last reading → its unit",
                "additionalProperties": {"type": "string"},
            },
        }
    )
    audit = _obj(
        {
            "id": {"type": "integer"},
            "at": TIME,
            "actor": {"type": "string"},
            "action": {"type": "string"},
            "target": {"type": "string"},
            "old": {"nullable": True},
            "new": {"nullable": True},
        }
    )
    settings = _obj(
        {
            "detector": {
                "type": "object",
                "description": "EnsembleDetector parameters: anomaly_threshold (0–1), "
                "window_size (10–10,000 readings), model_update_interval (readings), use_* (bool)",
                "properties": {
                    "anomaly_threshold": {"type": "number", "minimum": 0, "maximum": 1},
                    "window_size": {"type": "integer", "minimum": 10, "maximum": 10_000},
                    "model_update_interval": {"type": "integer", "minimum": 10},
                },
                "additionalProperties": True,
            },
            "severity": {
                "type": "object",
                "description": "severity cut-offs: high, medium (0–1), escalate_per_minute",
                "properties": {
                    "high": {"type": "number", "minimum": 0, "maximum": 1},
                    "medium": {"type": "number", "minimum": 0, "maximum": 1},
                    "escalate_per_minute": {"type": "number", "minimum": 0, "maximum": 1},
                },
            },
        },
        required=False,
    )
    retention = _obj({"days": {"type": "integer", "minimum": 1, "maximum": MAX_RETENTION_DAYS}})
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "IoT Live Workbench API",
            "version": "1",
            "description": (
                "Live readings, metrics and alerts of the workbench's detection workers. "
                "WebSockets (not "
                "described here): ws://HOST:PORT/ (readings; ?device=ID,…&type=TYPE,…), /metrics "
                "(every second), /alerts (as they change). Every endpoint needs a token: "
                "'Authorization: Bearer <token>' (WebSockets also take ?token=)."
            ),
        },
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": _obj({"error": {"type": "string"}}),
                "Alert": alert,
                "Device": device,
                "Token": token,
                "AuditRecord": audit,
                "Settings": settings,
                "Retention": retention,
            },
        },
        "paths": {
            "/api/metrics": {
                "get": _op(
                    "readings feed, worker, alert and client figures",
                    "viewer",
                    {"type": "object"},
                    "",
                )
            },
            "/api/devices": {
                "get": _op(
                    "known devices, their last reading and status",
                    "viewer",
                    _page("Device"),
                    "400",
                    parameters=[
                        _query("type", "device types", _list_of(profiles.type_names)),
                        _query("status", "device status", _list_of(("ok", "alerting"))),
                        *PAGING,
                    ],
                )
            },
            "/api/anomalies": {
                "get": _op(
                    "alert history, newest first",
                    "viewer",
                    _page("Alert"),
                    "400",
                    parameters=[
                        _query("since", "alerts still going on at or after", TIME),
                        _query("until", "alerts that started at or before", TIME),
                        _query("severity", "severities", _list_of(SEVERITIES)),
                        _query("kind", "kinds", _list_of(SPECIFICITY)),
                        _query("device", "device ids", {"type": "string"}),
                        _query("state", "lifecycle states", _list_of(STATES)),
                        *PAGING,
                    ],
                )
            },
            "/api/anomalies/{alert_id}": {
                "get": _op(
                    "one alert", "viewer", _ref("Alert"), "404", parameters=[_path("alert_id")]
                )
            },
            "/api/anomalies/{alert_id}/ack": {
                "post": _op(
                    "acknowledge an active alert",
                    "analyst",
                    _ref("Alert"),
                    "404 409",
                    parameters=[_path("alert_id")],
                )
            },
            "/api/anomalies/{alert_id}/clear": {
                "post": _op(
                    "clear an alert",
                    "analyst",
                    _ref("Alert"),
                    "404 409",
                    parameters=[_path("alert_id")],
                )
            },
            "/api/settings": {
                "get": _op("detector settings in force", "viewer", _ref("Settings"), ""),
                "put": _op(
                    "change detector settings now (audited)",
                    "analyst",
                    _ref("Settings"),
                    "400",
                    requestBody=_body(_ref("Settings")),
                ),
            },
            "/api/retention": {
                "get": _op("alert retention", "viewer", _ref("Retention"), ""),
                "put": _op(
                    "change retention and delete what is older (audited)",
                    "admin",
                    {
                        **retention,
                        "properties": {**retention["properties"], "deleted": {"type": "integer"}},
                    },
                    "400",
                    requestBody=_body(retention),
                ),
            },
            "/api/audit": {
                "get": _op(
                    "audit log, newest first",
                    "admin",
                    _page("AuditRecord"),
                    "400",
                    parameters=[
                        _query("since", "at or after", TIME),
                        _query("until", "at or before", TIME),
                        _query("actor", "part of the actor's name", {"type": "string"}),
                        _query("action", "e.g. alert.acknowledge", {"type": "string"}),
                        *PAGING,
                    ],
                )
            },
            "/api/tokens": {
                "get": _op(
                    "tokens (never their secrets)",
                    "admin",
                    _obj({"items": {"type": "array", "items": _ref("Token")}}),
                    "",
                ),
                "post": _op(
                    "create a token; its text is in this response only",
                    "admin",
                    {"allOf": [_ref("Token"), _obj({"token": {"type": "string"}})]},
                    "400",
                    status="201",
                    requestBody=_body(
                        _obj(
                            {
                                "name": {
                                    "type": "string",
                                    "pattern": f"^{NAME_PATTERN.pattern}$",
                                    "minLength": 1,
                                    "maxLength": NAME_MAX,
                                },
                                "role": {"type": "string", "enum": list(ROLES)},
                            }
                        )
                    ),
                ),
            },
            "/api/tokens/{token_id}": {
                "delete": _op(
                    "revoke a token", "admin", _ref("Token"), "404", parameters=[_path("token_id")]
                )
            },
            "/api/openapi.json": {"get": _op("this document", "viewer", {"type": "object"}, "")},
        },
    }
