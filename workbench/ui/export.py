"""CSV exports of the buffered readings and the alerts, safe to open in a spreadsheet.

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
from workbench.schema import Reading

READING_COLUMNS = (
    "ts",
    "device_id",
    "device_type",
    "seq",
    "lat",
    "lon",
    "firmware",
    *sorted({m for metrics in schema.METRICS.values() for m in metrics}),
)
ALERT_COLUMNS = tuple(Alert.__struct_fields__)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""First characters that make a spreadsheet read a cell as a formula."""


def spreadsheet_safe(value: object) -> object:
    """``value``, or for text a spreadsheet would run as a formula, the text after a ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, object]]) -> str:
    """CSV with a header row; each row's text cells made spreadsheet-safe, other keys ignored.

    Rows end in CRLF (RFC 4180), so a CR or LF inside a cell is always quoted.
    """
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: spreadsheet_safe(v) for k, v in row.items()})
    return out.getvalue()


def readings_csv(readings: Iterable[Reading]) -> str:
    """One column per field of any device type (blank where a type lacks a metric)."""
    return write_csv(
        READING_COLUMNS, (schema.to_dict(r) | {"ts": r.ts.isoformat()} for r in readings)
    )


def alerts_csv(alerts: Iterable[Alert]) -> str:
    """One row per alert, in its latest state."""
    return write_csv(ALERT_COLUMNS, (msgspec.to_builtins(a) for a in alerts))
