"""Profiles compiled to msgspec Structs: one decode call per record checks types, ranges, required
fields and undeclared ones, as fast as hand-written Structs (they are the same machinery).

Every reading type has the same attributes whatever the wire calls them: ``device_id``, ``ts``
(an aware UTC ``datetime``), ``seq``, ``lat``, ``lon``, ``firmware`` (None when unmapped or
absent) and one attribute per metric; ``device_type`` names its type. Times sent as epoch
seconds or milliseconds, or as naive local times, are turned into ``datetime`` right after
decoding (``__post_init__``; a bad one is a validation error naming the field).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar
from zoneinfo import ZoneInfo

import msgspec

from workbench.profiles.model import DeviceType, Mapping, Metric, Profiles

MAX_SEQ = 2**53 - 1
"""The largest sequence number: integers above it do not survive JSON readers that use doubles
(JavaScript, the detectors' float64 columns; RFC 7493), and a 309-digit one overflowed them."""
DeviceId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Firmware = Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=MAX_SEQ, description="per-device message counter")]
Latitude = Annotated[float, msgspec.Meta(ge=-90.0, le=90.0, description="latitude, degrees")]
Longitude = Annotated[float, msgspec.Meta(ge=-180.0, le=180.0, description="longitude, degrees")]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True, description="time of measurement, UTC")]
EpochSeconds = Annotated[float, msgspec.Meta(ge=0.0, le=1e11)]
OPTIONAL_TYPES: dict[str, Any] = {
    "seq": Sequence,
    "lat": Latitude,
    "lon": Longitude,
    "firmware": Firmware,
}


class ReadingBase(msgspec.Struct, kw_only=True, gc=False):
    """What every reading type shares (compiled types add their fields and metrics)."""

    device_type: ClassVar[str]
    """The device type, as the profile names it."""
    metric_names: ClassVar[tuple[str, ...]]
    """The type's metrics, in declaration order."""


def _metric_type(metric: Metric) -> Any:
    number = Annotated[
        float,
        msgspec.Meta(ge=metric.min, le=metric.max, description=f"{metric.name}, {metric.unit}"),
    ]
    return bool | number if metric.kind == "binary" else number


def _time_type(mapping: Mapping) -> Any:
    if mapping.time_format == "iso8601":
        return UtcTime
    if mapping.time_format in ("epoch_s", "epoch_ms"):
        return (
            EpochSeconds
            if mapping.time_format == "epoch_s"
            else Annotated[float, msgspec.Meta(ge=0.0, le=1e14)]
        )
    return Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


def _time_converter(mapping: Mapping) -> Callable[[Any], None] | None:
    """A ``__post_init__`` turning the wire time into an aware datetime, or None (ISO 8601)."""
    if mapping.time_format == "iso8601":
        return None
    if mapping.time_format in ("epoch_s", "epoch_ms"):
        scale = 1.0 if mapping.time_format == "epoch_s" else 1000.0

        def from_epoch(self: Any) -> None:
            if not isinstance(self.ts, datetime):  # made in Python: already a datetime
                self.ts = datetime.fromtimestamp(self.ts / scale, UTC)

        return from_epoch
    zone, fmt, wire = ZoneInfo(mapping.time_zone), mapping.time_format, mapping.time

    def from_local(self: Any) -> None:
        if isinstance(self.ts, datetime):  # made in Python: already a datetime
            return
        try:
            local = datetime.strptime(self.ts, fmt)
        except ValueError:
            raise ValueError(f"{wire} {self.ts!r} is not a time written as {fmt!r}") from None
        self.ts = local.replace(tzinfo=zone if local.tzinfo is None else local.tzinfo).astimezone(
            UTC
        )

    return from_local


def _struct(device_type: DeviceType, mapping: Mapping) -> type[ReadingBase]:
    fields: list[tuple[Any, ...]] = [("device_id", DeviceId), ("ts", _time_type(mapping))]
    for name, kind in OPTIONAL_TYPES.items():
        if name in mapping.required:
            fields.append((name, kind))
        elif name in mapping.fields:
            fields.append((name, kind | None, None))
    fields += [(m.name, _metric_type(m)) for m in device_type.metrics]
    wire = {"device_id": mapping.device_id, "ts": mapping.time, **mapping.fields}
    rename = {name: field for name, field in wire.items() if name != field} or None
    namespace: dict[str, Any] = {
        "device_type": device_type.name,
        "metric_names": device_type.metric_names,
        "__doc__": device_type.description or f"A reading of a {device_type.name}.",
    }
    unmapped = [n for n in OPTIONAL_TYPES if n not in mapping.fields and n not in mapping.required]
    converter = _time_converter(mapping)
    if converter is not None:
        namespace["__post_init__"] = converter
    struct = msgspec.defstruct(
        "".join(part.title() for part in device_type.name.split("_")),
        fields,
        bases=(ReadingBase,),
        kw_only=True,
        forbid_unknown_fields=device_type.extra == "refuse",
        rename=rename,
        tag_field=mapping.type_field if mapping.fixed_type is None else None,
        tag=device_type.name if mapping.fixed_type is None else None,
        namespace=namespace,
        gc=False,
    )
    for name in unmapped:  # the attribute exists on every reading, as None
        setattr(struct, name, None)
    return struct


@dataclass(frozen=True)
class CompiledProfiles:
    """Profiles with a Struct per device type and the one decoder for their wire format."""

    profiles: Profiles
    types: dict[str, type[ReadingBase]]
    decode: Callable[[bytes], ReadingBase]

    def of(self, name: str) -> type[ReadingBase]:
        """The Struct of device type ``name``; KeyError naming the declared types."""
        if name not in self.types:
            self.profiles.type(name)  # raises with the declared names
        return self.types[name]


def compile_profiles(profiles: Profiles) -> CompiledProfiles:
    """One Struct per device type, and a decoder for the fleet's wire format."""
    types = {t.name: _struct(t, profiles.mapping) for t in profiles.types}
    if profiles.mapping.fixed_type is not None:
        decoder = msgspec.json.Decoder(types[profiles.mapping.fixed_type])
    else:
        union = types[profiles.types[0].name]
        for struct in list(types.values())[1:]:
            union = union | struct  # type: ignore[assignment]
        decoder = msgspec.json.Decoder(union)
    return CompiledProfiles(profiles, types, decoder.decode)
