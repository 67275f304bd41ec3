"""Profiles as TOML text that :func:`workbench.profiles.load.parse_profiles` reads back unchanged,
with comments where a caller has something to say (``workbench profiles infer`` marks its guesses).

Notes are keyed by the dotted path of what they explain: ``""`` (the top of the file),
``"mapping"``, ``"mapping.time_format"``, ``"types.pump"``, ``"types.pump.interval_s"``,
``"types.pump.metrics.flow"``; each note is one comment line above its key.
"""

from __future__ import annotations

import json
import math
import re
import textwrap
from collections.abc import Iterable, Sequence
from collections.abc import Mapping as Lookup

from workbench.profiles.model import DeviceType, Mapping, Metric, Profiles

Notes = Lookup[str, Sequence[str]]
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (JSON's escapes are TOML's; TOML also escapes DEL)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_number(value: float) -> str:
    """A whole number without a fraction (``250_000``, ``-60``), anything else as Python writes
    it; both read back as the same float."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r}: a profile holds finite numbers only")
    if value.is_integer() and abs(value) < 1e16:
        return f"{int(value):_}" if abs(value) >= 10_000 else str(int(value))
    return repr(float(value))


def _comments(notes: Notes, path: str) -> list[str]:
    """Comment lines of at most 100 characters; a note's control characters are escaped, so it
    never ends its comment (TOML allows none in comments but tab)."""
    lines = []
    for note in notes.get(path, ()):
        text = _CONTROL.sub(lambda c: f"\\u{ord(c.group()):04x}", note)
        lines += [f"# {line}" for line in textwrap.wrap(text, 98, break_on_hyphens=False)]
    return lines


def _mapping_lines(mapping: Mapping) -> Iterable[tuple[str, str]]:
    yield "device_id", toml_string(mapping.device_id)
    yield "time", toml_string(mapping.time)
    yield "time_format", toml_string(mapping.time_format)
    if "%" in mapping.time_format or mapping.time_zone != "UTC":
        yield "time_zone", toml_string(mapping.time_zone)
    if mapping.fixed_type is not None:
        yield "fixed_type", toml_string(mapping.fixed_type)
    elif mapping.type_field is not None:
        yield "type", toml_string(mapping.type_field)
    for name, wire in mapping.fields.items():
        yield name, toml_string(wire)
    if mapping.required:
        yield "required", f"[{', '.join(toml_string(r) for r in mapping.required)}]"


def _metric_value(metric: Metric) -> str:
    parts = [f"unit = {toml_string(metric.unit)}"]
    if metric.kind != "binary" or (metric.min, metric.max) != (0.0, 1.0):
        parts += [f"min = {toml_number(metric.min)}", f"max = {toml_number(metric.max)}"]
    if metric.kind != "gauge":
        parts.append(f"kind = {toml_string(metric.kind)}")
    if metric.kind == "counter" and metric.direction != "rises":
        parts.append(f"direction = {toml_string(metric.direction)}")
    if metric.resolution is not None:
        parts.append(f"resolution = {toml_number(metric.resolution)}")
    if metric.criticality != 0.7:
        parts.append(f"criticality = {toml_number(metric.criticality)}")
    if metric.description:
        parts.append(f"description = {toml_string(metric.description)}")
    return "{ " + ", ".join(parts) + " }"


def _type_lines(device_type: DeviceType) -> Iterable[tuple[str, str]]:
    if device_type.description:
        yield "description", toml_string(device_type.description)
    yield "interval_s", toml_number(device_type.interval_s)
    yield "extra", toml_string(device_type.extra)
    for metric in device_type.metrics:
        yield f"metrics.{metric.name}", _metric_value(metric)


def to_toml(profiles: Profiles, notes: Notes | None = None) -> str:
    """The profile file for ``profiles``, each note a comment above the key it explains (a
    table's own notes stand apart, under its header)."""
    notes = notes or {}
    lines = _comments(notes, "")
    sections = [("mapping", _mapping_lines(profiles.mapping))]
    sections += [(f"types.{t.name}", _type_lines(t)) for t in profiles.types]
    for table, keys in sections:
        about_table = _comments(notes, table)
        lines += ["", f"[{table}]", *about_table, *([""] if about_table else [])]
        for key, value in keys:
            lines += [*_comments(notes, f"{table}.{key}"), f"{key} = {value}"]
    return "\n".join(lines).lstrip("\n") + "\n"
