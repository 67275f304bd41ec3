"""The rules ``profiles infer`` guesses by, each from one field's values: how a time is written,
a range around what was observed, whether a metric is binary or a counter, a device's reporting
interval, a unit from a metric's name."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import msgspec

from workbench.profiles.compile import UtcTime

NAIVE_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M:%S.%f",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
    "%d.%m.%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %H:%M",
    "%Y-%m-%d %H:%M:%S%z",
)
"""The time layouts tried on text without an RFC 3339 zone, in this order."""
EPOCH_RANGE_S = (946_684_800, 4_102_444_800)
"""Epoch seconds from 2000 to 2100: a time field's numbers in it are seconds, ×1000 ms."""
MIN_COUNTER_PAIRS = 8
"""Consecutive readings (over all devices) a metric must rise or stay level over to be a counter."""
UNKNOWN_UNIT = "?"
"""A unit to fill in: ``profiles check`` accepts it, and every figure shows it until replaced."""
UNIT_WORDS = {
    "temperature": "°C",
    "temp": "°C",
    "humidity": "%",
    "pct": "%",
    "percent": "%",
    "voltage": "V",
    "current": "A",
    "power": "W",
    "energy": "kWh",
    "kwh": "kWh",
    "rpm": "rpm",
    "frequency": "Hz",
    "hz": "Hz",
    "co2": "ppm",
    "ppm": "ppm",
    "pm25": "µg/m³",
    "rssi": "dBm",
    "dbm": "dBm",
}
"""A metric name's last word → the unit it very likely has (proposed as a guess)."""
NO_FLOOR_UNITS = frozenset({"°C"})
"""Units whose zero is no physical floor: a range in them may cross zero."""


def is_number(value: object) -> bool:
    """A JSON number (true and false are not numbers here, whatever Python says)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def usable(value: float) -> bool:
    """A number a range can be made around (JSON integers may have 400 digits)."""
    try:
        return abs(float(value)) < 1e300
    except OverflowError:
        return False


def time_format(values: list[Any]) -> tuple[str, list[float]] | None:
    """How every one of ``values`` is written as a time after 2000, and the times (s since the
    epoch; naive ones read as UTC), or None: epoch seconds or milliseconds (by magnitude), RFC
    3339 with a zone, or the first of NAIVE_FORMATS that reads them all."""
    low_s, high_s = EPOCH_RANGE_S
    if all(is_number(v) for v in values):
        for fmt, scale in (("epoch_s", 1), ("epoch_ms", 1000)):
            if low_s * scale <= min(values) and max(values) <= high_s * scale:
                return fmt, [v / scale for v in values]
        return None
    if not all(isinstance(v, str) for v in values):
        return None
    try:
        return "iso8601", [msgspec.convert(v, UtcTime).timestamp() for v in values]
    except msgspec.ValidationError:
        pass
    for fmt in NAIVE_FORMATS:
        try:
            parsed = [datetime.strptime(v, fmt) for v in values]
        except ValueError:
            continue
        stamps = [(t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() for t in parsed]
        if min(stamps) >= low_s:
            return fmt, stamps
    return None


def fits(values: list[str], fmt: str) -> bool:
    """Whether every one of ``values`` reads as a time written as ``fmt``."""
    try:
        for value in values:
            datetime.strptime(value, fmt)
    except ValueError:
        return False
    return True


def steps(series: list[list[Any]]) -> list[Any]:
    """The differences between consecutive values of each series."""
    return [b - a for values in series for a, b in pairwise(values)]


def widen(low: float, high: float, zero_is_a_floor: bool = True) -> tuple[float, float]:
    """A guessed physical range around the observed ``low``–``high``.

    Each side moves out by the larger of the observed spread and the largest magnitude seen, so
    a value twice the highest seen still passes (an anomaly should raise an alert, not be refused
    as a broken reading); then out to a round number (a step of half a power of ten below the
    width). Data that never went below zero gets 0 as its minimum (a stopped pump reads 0), data
    that never went above zero gets 0 as its maximum: the range never crosses zero for them,
    unless zero is no floor for the quantity (``zero_is_a_floor=False``: °C).
    """
    margin = max(high - low, abs(low), abs(high)) or 1.0
    if not zero_is_a_floor:
        lo, hi = low - margin, high + margin
    else:
        lo = 0.0 if low >= 0 else low - margin
        hi = high + margin if high > 0 or low >= 0 else 0.0
    exponent = math.floor(math.log10(hi - lo))
    step, digits = 5 * 10.0 ** (exponent - 1), max(0, 1 - exponent)
    down, up = round(lo / step, 6), round(hi / step, 6)  # 0.55 / 0.05 is 11.000000000000002
    return (
        round(math.floor(down) * step, digits) + 0.0,
        round(math.ceil(up) * step, digits) + 0.0,
    )


def counter_room(high: float) -> float:
    """The proposed maximum of a counter: room to grow, a thousand times the highest value seen
    rounded up to a power of ten, and at least 10⁹."""
    return max(1e9, 10.0 ** (math.ceil(math.log10(max(high, 1.0))) + 3))


def counter_evidence(series: list[list[float]]) -> tuple[int, int] | None:
    """(consecutive pairs, rises) when every device's series looks like a counter's: no value
    ever fell, some rose, over at least MIN_COUNTER_PAIRS pairs in all; else None."""
    differences = steps(series)
    pairs, rises = len(differences), sum(d > 0 for d in differences)
    if any(d < 0 for d in differences) or not rises or pairs < MIN_COUNTER_PAIRS:
        return None
    return pairs, rises


def is_binary(values: list[Any]) -> bool:
    """true/false, or the whole numbers 0 and 1 (both seen), or a mix of those."""
    if not all(isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)) for v in values):
        return False
    return any(isinstance(v, bool) for v in values) or len(set(values)) == 2


def interval(gaps: list[float]) -> float:
    """The median gap, rounded to two significant digits (9.98 s → 10 s, 61.3 s → 61 s)."""
    return float(f"{statistics.median(gaps):.2g}")


def unit_for(name: str) -> str:
    """The unit a metric's name suggests by its last word, or UNKNOWN_UNIT."""
    return UNIT_WORDS.get(name.rsplit("_", 1)[-1], UNKNOWN_UNIT)
