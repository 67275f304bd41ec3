"""Device profiles from TOML, checked: every problem is reported at once, with file and line, and
says what is wrong and what is allowed.

    [mapping]
    device_id = "id"            # the JSON field of the device id (default "device_id")
    time = "t"                  # the JSON field of the time (default "ts")
    time_format = "epoch_ms"    # iso8601 | epoch_s | epoch_ms | a strftime format
    type = "kind"               # the field naming the device type, or instead:
    # fixed_type = "pump"       # every reading is of this type
    seq = "n"                   # optional fields: seq, lat, lon, firmware
    required = ["seq"]          # optional fields every reading must carry

    [types.pump]
    interval_s = 10             # expected seconds between a device's readings
    extra = "ignore"            # undeclared fields: ignore | refuse (default)
    metrics.pressure = { unit = "bar", min = 0, max = 40 }
    metrics.running = { unit = "on/off", kind = "binary" }
    metrics.pumped = { unit = "m³", min = 0, max = 1e9, kind = "counter" }
    # counters: direction = "rises" (default) or "falls"; any metric: resolution = smallest step
"""

from __future__ import annotations

import keyword
import math
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workbench.profiles.model import (
    DIRECTIONS,
    EXTRA,
    KINDS,
    OPTIONAL_FIELDS,
    TIME_FORMATS,
    DeviceType,
    Mapping,
    Metric,
    Profiles,
)

NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
"""Device type and metric names: they become attributes, columns, URL parts and CSV headers."""
RESERVED = frozenset({"device_id", "ts", "device_type", *OPTIONAL_FIELDS, "location"})
"""Names a metric cannot take: the reading's own fields, and the location detector's finding."""
DEFAULT_FILE = "default.toml"
"""The simulator's four device types, shipped with the package."""


def is_metric_name(name: str) -> bool:
    """Whether a metric may be called ``name`` (it is also the reading's JSON field)."""
    return bool(NAME.fullmatch(name)) and name not in RESERVED and not keyword.iskeyword(name)


class ProfileError(ValueError):
    """A profile file that cannot be used; ``problems`` lists every ``file:line: what`` found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class _Checker:
    """Collects problems while a parsed TOML document is turned into Profiles."""

    source: str
    lines: dict[str, int]
    problems: list[str]

    def problem(self, path: str, message: str) -> None:
        line = self.lines.get(path) or self.lines.get(path.rsplit(".", 1)[0], 0)
        self.problems.append(f"{self.source}:{line}: {path}: {message}")

    def table(self, path: str, value: object) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        self.problem(path, f"must be a table, not {type(value).__name__}")
        return {}

    def keys(self, path: str, table: dict[str, Any], allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.problem(f"{path}.{key}", f"unknown key; allowed: {', '.join(allowed)}")

    def text(self, path: str, table: dict[str, Any], key: str, default: str | None) -> str | None:
        if key not in table:
            return default
        value = table[key]
        if not isinstance(value, str) or not value:
            self.problem(f"{path}.{key}", "must be a non-empty string")
            return default
        return value

    def number(
        self, path: str, table: dict[str, Any], key: str, default: float | None
    ) -> float | None:
        value = table.get(key, default)
        if value is None:
            self.problem(f"{path}.{key}", "is required (a number)")
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            self.problem(f"{path}.{key}", f"must be a finite number, not {value!r}")
            return default
        return float(value)


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key path → the line that sets it (table headers, ``key =`` and ``a.b =`` lines)."""
    lines: dict[str, int] = {}
    table = ""
    header = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
    assignment = re.compile(r"^\s*([A-Za-z0-9_.\"' -]+?)\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        if match := header.match(line):
            table = match.group(1).replace('"', "").replace("'", "")
            lines.setdefault(table, number)
        elif match := assignment.match(line):
            key = match.group(1).replace('"', "").replace("'", "").replace(" ", "")
            lines.setdefault(f"{table}.{key}" if table else key, number)
    return lines


def _mapping(check: _Checker, raw: dict[str, Any]) -> Mapping:
    path = "mapping"
    allowed = ("device_id", "time", "time_format", "time_zone", "type", "fixed_type")
    check.keys(path, raw, (*allowed, *OPTIONAL_FIELDS, "required"))
    time_format = check.text(path, raw, "time_format", "iso8601") or "iso8601"
    if time_format not in TIME_FORMATS and "%" not in time_format:
        check.problem(
            f"{path}.time_format",
            f"{time_format!r} is not a time format; use {', '.join(TIME_FORMATS)} or a strftime "
            "format such as '%Y-%m-%d %H:%M:%S'",
        )
    zone = check.text(path, raw, "time_zone", "UTC") or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        check.problem(f"{path}.time_zone", f"{zone!r} is not a time zone (e.g. UTC, Europe/Paris)")
    if "type" in raw and "fixed_type" in raw:
        check.problem(path, "give either type (a field naming the type) or fixed_type, not both")
    fields = {}
    for name in OPTIONAL_FIELDS:
        if (wire := check.text(path, raw, name, None)) is not None:
            fields[name] = wire
    if ("lat" in fields) != ("lon" in fields):
        check.problem(path, "map both lat and lon, or neither")
    required = raw.get("required", [])
    if not isinstance(required, list) or any(r not in fields for r in required):
        check.problem(
            f"{path}.required",
            f"must list mapped optional fields ({', '.join(fields) or 'none are mapped'})",
        )
        required = []
    mapping = Mapping(
        device_id=check.text(path, raw, "device_id", "device_id") or "device_id",
        time=check.text(path, raw, "time", "ts") or "ts",
        time_format=time_format,
        time_zone=zone,
        type_field=None if "fixed_type" in raw else check.text(path, raw, "type", "device_type"),
        fixed_type=check.text(path, raw, "fixed_type", None),
        fields=fields,
        required=tuple(required),
    )
    wire = [mapping.device_id, mapping.time, mapping.type_field, *fields.values()]
    wire = [w for w in wire if w]
    if len(set(wire)) != len(wire):
        check.problem(path, f"two reading parts share a JSON field: {', '.join(wire)}")
    return mapping


def _metric(check: _Checker, path: str, name: str, raw: dict[str, Any]) -> Metric | None:
    check.keys(
        path,
        raw,
        ("unit", "min", "max", "kind", "criticality", "description", "direction", "resolution"),
    )
    if not is_metric_name(name):
        check.problem(
            path,
            f"metric name {name!r}: use 1–32 lower-case letters, digits and _, starting with a "
            f"letter, other than {', '.join(sorted(RESERVED))}",
        )
    kind = check.text(path, raw, "kind", "gauge") or "gauge"
    if kind not in KINDS:
        check.problem(f"{path}.kind", f"{kind!r} is not a kind; use one of {', '.join(KINDS)}")
    binary = kind == "binary"
    low = check.number(path, raw, "min", 0.0 if binary else None)
    high = check.number(path, raw, "max", 1.0 if binary else None)
    if low is not None and high is not None and not low < high:
        check.problem(path, f"min ({low:g}) must be below max ({high:g})")
    criticality = check.number(path, raw, "criticality", 0.7)
    if criticality is not None and not 0.0 <= criticality <= 1.0:
        check.problem(f"{path}.criticality", f"{criticality:g} is outside 0–1")
    unit = check.text(path, raw, "unit", None)
    if unit is None:
        check.problem(f"{path}.unit", "is required: every number shown has a unit")
    direction = check.text(path, raw, "direction", "rises") or "rises"
    if direction not in DIRECTIONS or ("direction" in raw and kind != "counter"):
        check.problem(
            f"{path}.direction",
            f"only a counter has a direction: {' or '.join(DIRECTIONS)}",
        )
    resolution = check.number(path, raw, "resolution", 0.0) if "resolution" in raw else None
    span = None if low is None or high is None else high - low
    if resolution is not None and span is not None and not 0.0 < resolution < span:
        check.problem(f"{path}.resolution", f"must be above 0 and below max − min ({unit})")
    if None in (low, high, criticality, unit):
        return None
    return Metric(
        name,
        unit or "",
        low or 0.0,
        high or 0.0,
        kind,
        criticality or 0.0,
        check.text(path, raw, "description", "") or "",
        direction,
        resolution,
    )


def _type(check: _Checker, name: str, raw: dict[str, Any]) -> DeviceType | None:
    path = f"types.{name}"
    check.keys(path, raw, ("interval_s", "extra", "description", "metrics"))
    if not NAME.fullmatch(name):
        check.problem(path, f"type name {name!r}: use 1–32 lower-case letters, digits and _")
    interval = check.number(path, raw, "interval_s", None)
    if interval is not None and interval <= 0:
        check.problem(f"{path}.interval_s", "must be above 0 s")
    extra = check.text(path, raw, "extra", "refuse") or "refuse"
    if extra not in EXTRA:
        check.problem(f"{path}.extra", f"{extra!r}: use one of {', '.join(EXTRA)}")
    metrics_raw = check.table(f"{path}.metrics", raw.get("metrics", {}))
    if not metrics_raw:
        check.problem(f"{path}.metrics", "a device type needs at least one metric")
    metrics = [
        _metric(check, f"{path}.metrics.{m}", m, check.table(f"{path}.metrics.{m}", spec))
        for m, spec in metrics_raw.items()
    ]
    if interval is None or None in metrics:
        return None
    return DeviceType(
        name,
        tuple(m for m in metrics if m is not None),
        interval,
        extra,
        check.text(path, raw, "description", "") or "",
    )


def parse_profiles(text: str, source: str = "<profiles>") -> Profiles:
    """Profiles from TOML text; ProfileError listing every problem with ``source:line``."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise ProfileError([f"{source}:{line.group(1) if line else 0}: not TOML: {exc}"]) from None
    check = _Checker(source, _key_lines(text), [])
    check.keys("", document, ("mapping", "types"))
    mapping = _mapping(check, check.table("mapping", document.get("mapping", {})))
    types_raw = check.table("types", document.get("types", {}))
    if not types_raw:
        check.problems.append(f"{source}:0: types: declare at least one device type")
    types = [_type(check, n, check.table(f"types.{n}", spec)) for n, spec in types_raw.items()]
    if mapping.fixed_type is not None and mapping.fixed_type not in types_raw:
        check.problem("mapping.fixed_type", f"{mapping.fixed_type!r} is not a declared type")
    units: dict[str, tuple[str, str]] = {}
    for device_type in (t for t in types if t is not None):
        for metric in device_type.metrics:
            first = units.setdefault(metric.name, (metric.unit, device_type.name))
            if first[0] != metric.unit:
                check.problem(
                    f"types.{device_type.name}.metrics.{metric.name}",
                    f"unit {metric.unit!r} differs from {first[0]!r} in type {first[1]}: one "
                    "metric name is one quantity across a fleet",
                )
    if check.problems:
        raise ProfileError(check.problems)
    return Profiles(tuple(t for t in types if t is not None), mapping, source)


def load_profiles(path: Path | str | None = None) -> Profiles:
    """The profiles in ``path``, or the shipped default (the simulator's device types)."""
    if path is None:
        text = resources.files("workbench.profiles").joinpath(DEFAULT_FILE).read_text()
        return parse_profiles(text, f"<shipped {DEFAULT_FILE}>")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([f"{path}:0: cannot read it: {exc}"]) from None
    return parse_profiles(text, str(path))
