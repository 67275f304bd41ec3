"""HTML tables for notebooks: readings with a unit in every metric's header, the schema per type.

Both follow the fleet's profiles (default: the process's): its types, metrics and units.

Plain HTML (an ``ipywidgets.HTML`` value or ``IPython.display.HTML``) renders in JupyterLab and
Voilà alike and costs nothing to refresh; every value is escaped.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import datetime

from workbench.profiles.active import active
from workbench.profiles.model import Profiles
from workbench.schema import Reading


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


def readings_table(
    readings: Sequence[Reading], caption: str | None = None, profiles: Profiles | None = None
) -> str:
    """Readings as an HTML table: common fields, then only the metrics some reading has, and the
    position and firmware only when the profile maps them."""
    profiles = profiles or active().profiles
    present = {m for r in readings for m in r.metric_names}
    metrics = [m for m in profiles.metric_names if m in present]
    seq = [f for f in profiles.optional_fields if f == "seq"]
    rest = [f for f in profiles.optional_fields if f != "seq"]
    fields = ["device_id", "device_type", "ts", *seq, *metrics, *rest]
    header = [profiles.label(f) if f != "ts" else "ts (UTC)" for f in fields]
    rows = [[getattr(r, f, None) for f in fields] for r in readings]
    return html_table(header, rows, caption)


def schema_table(profiles: Profiles | None = None) -> str:
    """Each device type's metrics with unit, valid range, kind, meaning and reporting interval."""
    profiles = profiles or active().profiles
    rows = [
        [
            t.name,
            m.name,
            m.unit,
            f"{cell(m.min)} … {cell(m.max)}",
            m.kind,
            m.description,
            f"{t.interval_s:g} s",
        ]
        for t in profiles.types
        for m in t.metrics
    ]
    header = ["device type", "metric", "unit", "valid range", "kind", "meaning", "reports every"]
    return html_table(header, rows)
