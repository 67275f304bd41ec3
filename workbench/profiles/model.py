"""What a fleet's devices send, declared: device types, their metrics, and the wire mapping.

A profile is plain data, made by :mod:`workbench.profiles.load` from a TOML file and checked
there; the validator and the detectors are built from it (:mod:`workbench.profiles.compile`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

KINDS = ("gauge", "counter", "binary")
"""gauge: a level (temperature); counter: a register that only moves one way (energy in kWh
rises, a battery's charge falls); binary: a 0/1 state (door open)."""
DIRECTIONS = ("rises", "falls")
"""Which way a counter moves."""
RESOLUTION_SHARE = 1e-4
"""A metric's resolution, unless declared: this share of its physical range (about what a
14-bit converter resolves). Changes smaller than it are not told apart from noise."""
EXTRA = ("ignore", "refuse")
"""What a reading's undeclared fields do: nothing, or send it to the dead-letter topic."""
TIME_FORMATS = ("iso8601", "epoch_s", "epoch_ms")
"""Besides these, a ``strftime`` format for naive local times (``"%Y-%m-%d %H:%M:%S"``)."""
OPTIONAL_FIELDS = ("seq", "lat", "lon", "firmware")
"""Reading fields a mapping may leave out; the device id and the time are always required."""
POSITION_UNITS = {"lat": "°", "lon": "°"}
"""The units of a reading's own numeric fields (a metric's unit comes from its profile)."""


@dataclass(frozen=True)
class Metric:
    """One measured quantity of a device type."""

    name: str
    unit: str
    min: float
    max: float
    kind: str = "gauge"
    criticality: float = 0.7
    """How much a problem with this metric matters, 0–1 (1: the reason the device exists)."""
    description: str = ""
    direction: str = "rises"
    """A counter's direction (ignored for other kinds)."""
    resolution: float | None = None
    """The smallest change the device reports; default: RESOLUTION_SHARE of the range."""

    @property
    def step(self) -> float:
        """The smallest meaningful change of this metric, in its unit."""
        return self.resolution or (self.max - self.min) * RESOLUTION_SHARE


@dataclass(frozen=True)
class DeviceType:
    """A kind of device: what it measures and how often it reports."""

    name: str
    metrics: tuple[Metric, ...]
    interval_s: float
    """The expected time between two readings of one device (s)."""
    extra: str = "refuse"
    description: str = ""

    def metric(self, name: str) -> Metric:
        """The metric called ``name``; KeyError if the type has none."""
        for metric in self.metrics:
            if metric.name == name:
                return metric
        raise KeyError(f"device type {self.name!r} has no metric {name!r}")

    @property
    def optional_fields(self) -> tuple[str, ...]:
        """The optional reading fields (seq, lat, lon, firmware) this fleet's readings carry."""
        return tuple(f for f in OPTIONAL_FIELDS if f in self.mapping.fields)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)

    def of_kind(self, kind: str) -> tuple[str, ...]:
        """The names of this type's metrics of ``kind``."""
        return tuple(m.name for m in self.metrics if m.kind == kind)


@dataclass(frozen=True)
class Mapping:
    """Which JSON fields carry a reading's parts, and how its time is written."""

    device_id: str = "device_id"
    time: str = "ts"
    time_format: str = "iso8601"
    time_zone: str = "UTC"
    """The zone of naive local times (a ``strftime`` time format); ignored otherwise."""
    type_field: str | None = "device_type"
    fixed_type: str | None = None
    """Every reading is of this type (a topic that carries one kind of device)."""
    fields: dict[str, str] = field(default_factory=dict)
    """Optional reading field (seq, lat, lon, firmware) → the JSON field that carries it."""
    required: tuple[str, ...] = ()
    """Optional fields that every reading must nevertheless carry."""


@dataclass(frozen=True)
class Profiles:
    """A fleet: its device types and the mapping their readings use on the wire."""

    types: tuple[DeviceType, ...]
    mapping: Mapping
    source: str = "<profiles>"
    """Where the profiles came from (a file path), for messages."""

    def type(self, name: str) -> DeviceType:
        """The device type called ``name``; KeyError naming the types there are."""
        for device_type in self.types:
            if device_type.name == name:
                return device_type
        known = ", ".join(t.name for t in self.types)
        raise KeyError(f"no device type {name!r} in {self.source} (it declares {known})")

    @property
    def type_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.types)

    @property
    def metrics(self) -> dict[str, tuple[str, ...]]:
        """Device type → its metric names, in declaration order."""
        return {t.name: t.metric_names for t in self.types}

    @property
    def units(self) -> dict[str, str]:
        """Metric name → unit, over every type (a name means one quantity across a fleet)."""
        return {m.name: m.unit for t in self.types for m in t.metrics}

    @property
    def optional_fields(self) -> tuple[str, ...]:
        """The optional reading fields (seq, lat, lon, firmware) this fleet's readings carry."""
        return tuple(f for f in OPTIONAL_FIELDS if f in self.mapping.fields)

    @property
    def metric_names(self) -> tuple[str, ...]:
        """Every metric of the fleet once, in declaration order (types that share one, share it)."""
        return tuple(self.units)

    def unit(self, name: str) -> str | None:
        """The unit of a metric, or of a reading's position (lat, lon); None for other fields."""
        return self.units.get(name) or POSITION_UNITS.get(name)

    def label(self, name: str) -> str:
        """A field as a header or an axis names it: with its unit, e.g. ``volume (m³)``."""
        unit = self.unit(name)
        return f"{name} ({unit})" if unit else name

    @property
    def has_location(self) -> bool:
        return "lat" in self.mapping.fields and "lon" in self.mapping.fields
