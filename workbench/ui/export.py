"""CSV exports of the buffered readings and the alerts, safe to open in a spreadsheet.

The readings' columns follow the fleet's profiles: time, device and type, the optional fields its
mapping carries, then every metric any device type declares (in declaration order), each header
with its unit (``volume (m³)``).

Device ids, firmware and alert texts come from the devices, so a cell such as ``=cmd|' /C calc'!A0``
would be a formula to Excel or LibreOffice. Every text cell that starts like a formula gets a
leading ``'`` (OWASP's advice against CSV injection); numbers, negative ones included, stay numbers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence

import msgspec

from workbench import schema
from workbench.alerts.model import Alert
from workbench.profiles.active import active
from workbench.profiles.model import Profiles
from workbench.schema import Reading

ALERT_COLUMNS = tuple(Alert.__struct_fields__)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""


def spreadsheet_safe(value: object) -> object:
    """``value``, or for text a spreadsheet would run as a formula, the text after a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(
    columns: Sequence[str],
    rows: Iterable[Mapping[str, object]],
    header: Sequence[str] | None = None,
) -> str:
    """CSV of ``columns`` (titled ``header``, default the column names); each row's text cells
    made spreadsheet-safe, blank where a row lacks a column, other keys ignored.

    Rows end in CRLF (RFC 4180), so a CR or LF inside a cell is always quoted.
    """
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header or columns)
    for row in rows:
        writer.writerow([spreadsheet_safe(row.get(c)) for c in columns])
    return out.getvalue()


def reading_columns(profiles: Profiles | None = None) -> tuple[str, ...]:
    """The readings export's fields: the ones every reading has, then the fleet's metrics."""
    profiles = profiles or active().profiles
    return ("ts", "device_id", "device_type", *profiles.optional_fields, *profiles.metric_names)


def reading_header(profiles: Profiles | None = None) -> tuple[str, ...]:
    """The readings export's header row: its fields, each metric and position with its unit."""
    profiles = profiles or active().profiles
    return tuple(profiles.label(c) for c in reading_columns(profiles))


def readings_csv(readings: Iterable[Reading], profiles: Profiles | None = None) -> str:
    """One row per reading, one column per field of any device type (blank where a type lacks
    the metric)."""
    profiles = profiles or active().profiles
    return write_csv(
        reading_columns(profiles),
        (schema.to_dict(r) | {"ts": r.ts.isoformat()} for r in readings),
        reading_header(profiles),
    )


def alerts_csv(alerts: Iterable[Alert]) -> str:
    """One row per alert, in its latest state."""
    return write_csv(ALERT_COLUMNS, (msgspec.to_builtins(a) for a in alerts))
