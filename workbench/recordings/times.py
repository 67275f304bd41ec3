"""A recording's times read, and written as a profile's wire format wants them.

A recording's time column is read with the profile's ``strftime`` format first (when it declares
one), else recognised: an epoch number (milliseconds from 10¹¹ on, seconds below, so a recording
in seconds replays to a fleet that sends milliseconds: every time from 1973 to 5138 is told apart)
or ISO 8601. Times without a zone are in the profile's ``time_zone`` (UTC unless it says so).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from workbench.profiles.model import Mapping

EPOCH_MS_FROM = 1e11
"""Epoch numbers at least this large are milliseconds (10¹¹ s is the year 5138)."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_time(value: Any, mapping: Mapping) -> datetime:
    """``value`` as an aware UTC datetime; ValueError saying what was expected."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("no time")
    zone = ZoneInfo(mapping.time_zone)
    text = str(value).strip()
    fmt = mapping.time_format
    if "%" in fmt:
        try:
            return _aware(datetime.strptime(text, fmt), zone)
        except ValueError:
            pass
    number = _number(value)
    if number is not None:
        if not math.isfinite(number):
            raise ValueError(f"time {text!r} is not finite")
        scale = 1000.0 if abs(number) >= EPOCH_MS_FROM else 1.0
        try:
            return datetime.fromtimestamp(number / scale, UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"time {text!r} is out of range") from None
    try:
        return _aware(datetime.fromisoformat(text), zone)
    except ValueError:
        written = f", nor written as {fmt!r}" if "%" in fmt else ""
        raise ValueError(
            f"time {text!r} is not ISO 8601 nor epoch seconds or milliseconds{written}"
        ) from None


def _aware(moment: datetime, zone: ZoneInfo) -> datetime:
    return (moment if moment.tzinfo else moment.replace(tzinfo=zone)).astimezone(UTC)


def wire_time(moment: datetime, mapping: Mapping) -> str | float | int:
    """``moment`` as the profile's wire format writes it (ISO 8601, epoch s or ms, or local)."""
    fmt = mapping.time_format
    if fmt == "iso8601":
        return moment.astimezone(UTC).isoformat()
    if fmt == "epoch_s":
        return moment.timestamp()
    if fmt == "epoch_ms":
        ms = round(moment.timestamp() * 1000, 3)
        return int(ms) if ms.is_integer() else ms
    return moment.astimezone(ZoneInfo(mapping.time_zone)).strftime(fmt)
