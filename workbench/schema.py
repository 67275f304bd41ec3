"""The reading schema: one typed record per device type, decoded and validated in a single step.

The record types are compiled from the device profiles the process runs on
(:mod:`workbench.profiles`; the shipped default declares the simulator's four types). Readings
travel as JSON objects; the type field selects the record type and therefore which metrics must be
present; a metric a device type does not measure is absent (never zero). Value ranges are what the
hardware can physically report, so anything outside them is a broken reading, not an anomaly.
"""

from __future__ import annotations

import functools
import operator

import msgspec

from workbench.profiles.active import active, shipped
from workbench.profiles.compile import MAX_SEQ, ReadingBase

__all__ = ["MAX_SEQ"]

DEVICE_ID_PATTERN = r"[A-Za-z0-9._:-]+"
"""Allowed device ids (they end up in HTML, file names and URLs): the whole id must match
(``re.fullmatch``; a ``$`` anchor would let a final newline through). Checked by the validator,
which caches ids it has seen: a regex per message would cost as much as the rest of decoding."""
FIRMWARE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]*"
"""Allowed firmware versions ("4.2.1", "v2.0.0-rc.1+build.7"): the whole text must match; it
starts with a letter or digit, so it never reads as markup or a spreadsheet formula. Checked by
the validator, cached like device ids."""

_SIMULATED = shipped().types
Thermostat = _SIMULATED["thermostat"]
SmartMeter = _SIMULATED["smart_meter"]
AirQuality = _SIMULATED["air_quality"]
EnvSensor = _SIMULATED["env_sensor"]
"""The simulator's device types (the shipped default profile), whatever the process runs on."""

_ACTIVE = active()
READING_TYPES: tuple[type[ReadingBase], ...] = tuple(_ACTIVE.types.values())
Reading = functools.reduce(operator.or_, READING_TYPES)
"""Any reading of the process's device types (their union: what a decoder of one takes)."""
DEVICE_TYPES: tuple[str, ...] = _ACTIVE.profiles.type_names
COMMON_FIELDS: tuple[str, ...] = ("device_id", "ts", "seq", "lat", "lon", "firmware")
METRICS: dict[str, tuple[str, ...]] = _ACTIVE.profiles.metrics
"""The metrics each device type measures, in profile order."""
UNITS: dict[str, str] = {**_ACTIVE.profiles.units, "lat": "°", "lon": "°"}

_encoder = msgspec.json.Encoder()


def encode(reading: Reading) -> bytes:
    """Serialise one reading to its wire form (JSON, UTF-8)."""
    return _encoder.encode(reading)


def to_dict(reading: Reading) -> dict:
    """The reading as a plain dict by field name, whatever its wire format calls them: the type,
    the common fields (None where the profile maps none), then the type's metrics."""
    return (
        {"device_type": reading.device_type}
        | {name: getattr(reading, name) for name in COMMON_FIELDS}
        | {name: getattr(reading, name) for name in reading.metric_names}
    )
