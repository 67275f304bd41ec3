"""The reading schema: one typed record per device type, decoded and validated in a single step.

Readings travel as JSON objects on ``iot.readings``. ``device_type`` selects the record type and
therefore which metrics must be present; a metric a device type does not measure is absent (never
zero), and an unknown field is refused. Value ranges are what the hardware can physically report, so
anything outside them is a broken reading, not an anomaly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

Celsius = Annotated[float, msgspec.Meta(ge=-60.0, le=150.0, description="temperature, °C")]
Percent = Annotated[float, msgspec.Meta(ge=0.0, le=100.0, description="relative humidity, %")]
Watts = Annotated[float, msgspec.Meta(ge=0.0, le=250_000.0, description="active power, W")]
KilowattHours = Annotated[
    float, msgspec.Meta(ge=0.0, le=1e9, description="cumulative energy register, kWh")
]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0, description="battery charge, 0–1")]
Ppm = Annotated[float, msgspec.Meta(ge=0.0, le=40_000.0, description="CO₂ concentration, ppm")]
MicrogramsPerCubicMetre = Annotated[
    float, msgspec.Meta(ge=0.0, le=2_000.0, description="PM2.5 concentration, µg/m³")
]
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0, description="latitude, degrees")]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0, description="longitude, degrees")]
DEVICE_ID_PATTERN = r"[A-Za-z0-9._:-]+"
"""Allowed device ids (they end up in HTML, file names and URLs): the whole id must match
(``re.fullmatch``; a ``$`` anchor would let a final newline through). Checked by the validator,
which caches ids it has seen: a regex per message would cost as much as the rest of decoding."""
FIRMWARE_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._+-]*"
"""Allowed firmware versions ("4.2.1", "v2.0.0-rc.1+build.7"): the whole text must match; it
starts with a letter or digit, so it never reads as markup or a spreadsheet formula. Checked by
the validator, cached like device ids."""
MAX_SEQ = 2**53 - 1
"""The largest sequence number: integers above it do not survive JSON readers that use doubles
(JavaScript, the detectors' float64 columns; RFC 7493), and a 309-digit one overflowed them."""
DeviceId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Firmware = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ, description="per-device message counter")]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True, description="time of measurement, UTC")]


class _Base(
    msgspec.Struct,
    kw_only=True,
    forbid_unknown_fields=True,
    tag_field="device_type",
    gc=False,
):
    """Fields every device sends."""

    device_id: DeviceId
    ts: UtcTime
    seq: Sequence
    lat: Latitude
    lon: Longitude
    firmware: Firmware

    @property
    def device_type(self) -> str:
        """The device type, as named on the wire."""
        return self.__struct_config__.tag  # type: ignore[return-value]


class Thermostat(_Base, tag="thermostat"):
    """A wired room thermostat driving an HVAC unit."""

    temperature: Celsius
    humidity: Percent
    power: Watts
    energy: KilowattHours


class SmartMeter(_Base, tag="smart_meter"):
    """A mains electricity meter."""

    power: Watts
    energy: KilowattHours


class AirQuality(_Base, tag="air_quality"):
    """A battery-powered indoor air-quality sensor."""

    temperature: Celsius
    humidity: Percent
    co2: Ppm
    pm25: MicrogramsPerCubicMetre
    battery: Fraction


class EnvSensor(_Base, tag="env_sensor"):
    """A battery-powered temperature/humidity logger (cold rooms, warehouses)."""

    temperature: Celsius
    humidity: Percent
    battery: Fraction


Reading = Thermostat | SmartMeter | AirQuality | EnvSensor
READING_TYPES: tuple[type[_Base], ...] = (Thermostat, SmartMeter, AirQuality, EnvSensor)
DEVICE_TYPES: tuple[str, ...] = tuple(t.__struct_config__.tag for t in READING_TYPES)
COMMON_FIELDS: tuple[str, ...] = _Base.__struct_fields__
METRICS: dict[str, tuple[str, ...]] = {
    t.__struct_config__.tag: tuple(f for f in t.__struct_fields__ if f not in COMMON_FIELDS)
    for t in READING_TYPES
}
"""The metrics each device type measures, in schema order."""

UNITS: dict[str, str] = {
    "temperature": "°C",
    "humidity": "%",
    "power": "W",
    "energy": "kWh",
    "battery": "fraction",
    "co2": "ppm",
    "pm25": "µg/m³",
    "lat": "°",
    "lon": "°",
}

_encoder = msgspec.json.Encoder()


def encode(reading: Reading) -> bytes:
    """Serialise one reading to its wire form (JSON, UTF-8)."""
    return _encoder.encode(reading)


def to_dict(reading: Reading) -> dict:
    """A plain dict of the reading, ``device_type`` included (for tables and notebooks)."""
    return msgspec.to_builtins(reading) | {"ts": reading.ts}
