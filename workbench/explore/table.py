"""HTML tables for notebooks: readings with a unit in every metric's header, the schema per type.

Plain HTML (an ``ipywidgets.HTML`` value or ``IPython.display.HTML``) renders in JupyterLab and
Voilà alike and costs nothing to refresh; every value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from workbench.schema import COMMON_FIELDS, DEVICE_TYPES, METRICS, READING_TYPES, UNITS, Reading

ALL_METRICS: tuple[str, ...] = tuple(dict.fromkeys(m for t in DEVICE_TYPES for m in METRICS[t]))
"""Every metric of any device type, in schema order."""


def cell(value: object) -> str:
    """A value as a table shows it: times to the millisecond (UTC), floats to 6 figures."""
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.6g}"
    return str(value)


def html_table(
    header: Sequence[str], rows: Iterable[Sequence[object]], caption: str | None = None
) -> str:
    """An HTML table (values escaped)."""
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(cell(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def with_unit(name: str) -> str:
    """A column header with its unit, e.g. ``temperature (°C)``."""
    return f"{name} ({UNITS[name]})" if name in UNITS else name


def readings_table(readings: Sequence[Reading], caption: str | None = None) -> str:
    """Readings as an HTML table: common fields, then only the metrics some reading has."""
    present = {m for r in readings for m in METRICS[r.device_type]}
    metrics = [m for m in ALL_METRICS if m in present]
    fields = ["device_id", "device_type", "ts", "seq", *metrics, "lat", "lon", "firmware"]
    header = [with_unit(f) if f != "ts" else "ts (UTC)" for f in fields]
    rows = [[getattr(r, f, None) for f in fields] for r in readings]
    return html_table(header, rows, caption)


def _bounds(field_type: object) -> str:
    constraint = getattr(field_type, "type", field_type)
    low, high = getattr(constraint, "ge", None), getattr(constraint, "le", None)
    if low is None and high is None:
        return ""
    return f"{cell(low) if low is not None else ''} … {cell(high) if high is not None else ''}"


def schema_table() -> str:
    """Each device type's metrics with unit, valid range and meaning (from ``workbench.schema``)."""
    rows = []
    for reading_type in READING_TYPES:
        device_type = reading_type.__struct_config__.tag
        for f in msgspec.inspect.type_info(reading_type).fields:
            if f.name in COMMON_FIELDS:
                continue
            meaning = getattr(f.type, "extra_json_schema", {}).get("description", "")
            rows.append(
                [device_type, f.name, UNITS.get(f.name, ""), _bounds(f.type), meaning.split(",")[0]]
            )
    return html_table(["device type", "metric", "unit", "valid range", "meaning"], rows)
