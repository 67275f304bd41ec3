"""Device profiles proposed from a sample of a topic's readings, for a person to review.

The device id, time, type, sequence, location and firmware fields are found by what their values
look like (and, between equals, by their names); each type's metrics are its numeric fields,
binary when they only say 0/1 or true/false, counters when they never fall for any device and do
rise. Ranges, intervals and units are guesses, and the proposal says so next to each of them.
"""

from __future__ import annotations

import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from workbench.config import Settings
from workbench.profiles.compile import MAX_SEQ
from workbench.profiles.guess import (
    NAIVE_FORMATS,
    NO_FLOOR_UNITS,
    UNKNOWN_UNIT,
    counter_evidence,
    counter_room,
    fits,
    interval,
    is_binary,
    is_number,
    steps,
    time_format,
    unit_for,
    usable,
    widen,
)
from workbench.profiles.load import NAME, is_metric_name
from workbench.profiles.model import DeviceType, Mapping, Metric, Profiles
from workbench.profiles.write import to_toml, toml_string
from workbench.schema import DEVICE_ID_PATTERN, FIRMWARE_PATTERN

ID_NAMES = ("device_id", "deviceid", "device", "serial", "serial_number", "sensor_id", "sensor")
ID_NAMES += ("id", "uid", "dev_eui", "eui", "mac", "imei")
TIME_NAMES = ("ts", "time", "timestamp", "t", "datetime", "date", "t_ms", "ts_ms", "time_ms")
TYPE_NAMES = ("device_type", "type", "model", "kind", "device_model", "category", "class")
SEQ_NAMES = ("seq", "sequence", "seq_no", "seqno", "sequence_number", "n", "fcnt", "frame_count")
LAT_NAMES = ("lat", "latitude")
LON_NAMES = ("lon", "lng", "long", "longitude")
FIRMWARE_NAMES = ("firmware", "fw", "fw_version", "firmware_version", "sw_version", "version")
MAX_TYPES = 50
"""A text field with more distinct values than this is not a device type."""
PLACEHOLDER_INTERVAL_S = 60.0
"""The interval proposed when no device of a type sent two readings in the sample."""
_ID_OK = re.compile(DEVICE_ID_PATTERN).fullmatch
_FIRMWARE_OK = re.compile(FIRMWARE_PATTERN).fullmatch


class InferenceError(ValueError):
    """The sample holds nothing a profile can be made from (no readings, no id or time field)."""


@dataclass(frozen=True)
class Proposal:
    """Profiles inferred from sampled readings, and what was guessed, by TOML key path."""

    profiles: Profiles
    notes: dict[str, tuple[str, ...]]
    """TOML key path ("" for the top, "mapping.time_format", "types.pump.metrics.flow") → notes."""

    def toml(self) -> str:
        """The proposed profile file, each guess marked in a comment above its line."""
        return to_toml(self.profiles, self.notes)


@dataclass
class _Sample:
    """The readings, the roles found so far, and the notes being written."""

    readings: list[dict[str, Any]]
    notes: defaultdict[str, list[str]]
    taken: dict[str, str]
    """Reading part (device_id, ts, type, seq, lat, lon, firmware) → the JSON field carrying it."""

    def in_all(self) -> list[str]:
        """The fields every reading carries, in order of appearance."""
        counts = Counter(k for r in self.readings for k in r)
        return [k for k in _fields(self.readings) if counts[k] == len(self.readings)]

    def free(self, fields: list[str]) -> list[str]:
        """``fields`` that carry no reading part yet."""
        return [f for f in fields if f not in self.taken.values()]


def _fields(readings: list[dict[str, Any]]) -> list[str]:
    """Every field of ``readings``, in order of first appearance."""
    return list(dict.fromkeys(k for r in readings for k in r))


def _name_rank(field: str, names: tuple[str, ...]) -> int:
    """Where ``field`` is among the usual ``names`` of a role (len(names): not among them)."""
    key = field.lower().replace("-", "_")
    return names.index(key) if key in names else len(names)


def _num(value: float) -> str:
    """A figure for a note: whole from 1,000 on (thousands separated), else 4 significant digits."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _quoted(value: object) -> str:
    """A value for a note: in double quotes, cut to 24 characters."""
    text = str(value)
    return f'"{text if len(text) <= 24 else text[:23] + "…"}"'


def _example(values: list[Any]) -> str:
    """The most common of ``values`` (the first in text order between equals), for a note."""
    counts = Counter(values)
    return _quoted(min(counts, key=lambda v: (-counts[v], str(v))))


def _find_time(sample: _Sample) -> tuple[str, list[float]]:
    """The time field (a usual name first), its format and each reading's time (s)."""
    found = {f: t for f in sample.in_all() if (t := time_format([r[f] for r in sample.readings]))}
    if not found:
        raise InferenceError(
            "no field holds a time in every reading (epoch seconds or milliseconds, RFC 3339, "
            f"or a layout such as {NAIVE_FORMATS[2]!r}); fields seen: "
            + ", ".join(_fields(sample.readings))
        )
    field = min(found, key=lambda f: _name_rank(f, TIME_NAMES))
    fmt, seconds = found[field]
    sample.taken["ts"] = field
    values = [r[field] for r in sample.readings]
    first, last = (
        datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
        for t in (min(seconds), max(seconds))
    )
    written = {
        "epoch_s": "numbers: seconds since 1970",
        "epoch_ms": "numbers: milliseconds since 1970",
        "iso8601": "RFC 3339 times with a zone",
    }.get(fmt, f"text such as {_quoted(min(values))}")
    naive = "%" in fmt and "%z" not in fmt
    notes = sample.notes["mapping.time_format"]
    notes.append(f"{written}; from {first} to {last} UTC{' (read as UTC)' if naive else ''}")
    if "%" in fmt and (others := [f for f in NAIVE_FORMATS if f != fmt and fits(values, f)]):
        notes.append(f"guess: these times also read as {', '.join(others)}")
    if naive:
        sample.notes["mapping.time_zone"].append(
            "guess: the times carry no zone, so UTC is assumed; set the devices' zone "
            "(e.g. Europe/Paris)"
        )
    return fmt, seconds


def _find_id(sample: _Sample) -> list[str]:
    """The device id field (text in every reading, id-like, the most distinct values among the
    usual names, else overall); returns each reading's id."""
    distinct: dict[str, int] = {}
    for field in sample.free(sample.in_all()):
        values = [r[field] for r in sample.readings]
        if all(isinstance(v, str) and 0 < len(v) <= 64 and _ID_OK(v) for v in values):
            distinct[field] = len(set(values))
    if not distinct:
        raise InferenceError(
            "no text field in every reading looks like a device id (1–64 letters, digits "
            f"and . _ : -); fields seen: {', '.join(_fields(sample.readings))}"
        )
    # A field with one value only names the device when nothing else can.
    first = min(
        distinct,
        key=lambda f: (
            _name_rank(f, ID_NAMES) if distinct[f] > 1 else len(ID_NAMES) + 1,
            -distinct[f],
        ),
    )
    sample.taken["device_id"] = first
    ids = [r[first] for r in sample.readings]
    notes = sample.notes["mapping.device_id"]
    notes.append(f"{distinct[first]:,} devices, e.g. {_example(ids)}")
    if more := [f for f in distinct if distinct[f] > distinct[first]]:
        notes.append(
            f"guess: chosen for its name; {', '.join(more)} vary more (an id per message?)"
        )
    return ids


def _find_type(sample: _Sample, ids: list[str]) -> str | None:
    """The device type field: text in every reading, a type name, the same for each device, at
    most MAX_TYPES values (fewer than the devices unless it has a usual name); or None."""
    devices = len(set(ids))
    fitting = []
    for field in sample.free(sample.in_all()):
        values = [r[field] for r in sample.readings]
        if not all(isinstance(v, str) for v in values):
            continue
        named = _name_rank(field, TYPE_NAMES) < len(TYPE_NAMES)
        bad = next((v for v in values if not NAME.fullmatch(v)), None)
        steady = len(set(zip(ids, values, strict=True))) == devices
        kinds = len(set(values))
        if bad is None and steady and kinds <= MAX_TYPES and (named or kinds < devices):
            fitting.append(field)
        elif named:
            why = (
                f"{_quoted(bad)} is not a type name (1–32 lower-case letters, digits and _)"
                if bad is not None
                else "it changes within a device"
                if not steady
                else f"it has {kinds:,} values"
            )
            sample.notes["mapping"].append(f"not the device type: {_quoted(field)}, as {why}")
    if not fitting:
        return None
    field = min(fitting, key=lambda f: _name_rank(f, TYPE_NAMES))
    sample.taken["type"] = field
    return field


def _by_device(ids: list[str], seconds: list[float]) -> dict[str, list[int]]:
    """Device id → the indexes of its readings, in time order."""
    devices: dict[str, list[int]] = defaultdict(list)
    for i in sorted(range(len(ids)), key=seconds.__getitem__):
        devices[ids[i]].append(i)
    return devices


def _series(
    readings: list[dict[str, Any]], devices: dict[str, list[int]], field: str
) -> list[list[Any]]:
    """Each device's values of ``field``, in time order (readings without it left out)."""
    return [[readings[i][field] for i in rows if field in readings[i]] for rows in devices.values()]


def _find_seq(sample: _Sample, devices: dict[str, list[int]]) -> None:
    """The sequence field: whole numbers that rise with every reading of each device, by 1 in
    the median step unless the field has a usual name."""
    for field in sorted(
        sample.free(_fields(sample.readings)), key=lambda f: _name_rank(f, SEQ_NAMES)
    ):
        values = [r[field] for r in sample.readings if field in r]
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_SEQ for v in values
        ):
            continue
        rises = steps(_series(sample.readings, devices, field))
        if not rises or min(rises) <= 0:
            continue
        named = _name_rank(field, SEQ_NAMES) < len(SEQ_NAMES)
        if named or statistics.median(rises) == 1:
            sample.taken["seq"] = field
            sample.notes["mapping.seq"].append(
                f"rises with every reading of a device, by {_num(statistics.median(rises))} "
                f"in the median over {len(rises):,} steps"
            )
            return


def _find_location_and_firmware(sample: _Sample) -> None:
    def first(names: tuple[str, ...], fits: Callable[[Any], bool]) -> str | None:
        for field in sample.free(_fields(sample.readings)):
            values = [r[field] for r in sample.readings if field in r]
            if _name_rank(field, names) < len(names) and all(fits(v) for v in values):
                return field
        return None

    lat = first(LAT_NAMES, lambda v: is_number(v) and -90 <= v <= 90)
    lon = first(LON_NAMES, lambda v: is_number(v) and -180 <= v <= 180)
    if lat and lon:
        sample.taken.update(lat=lat, lon=lon)
        sample.notes["mapping.lat"].append("degrees: every value within −90…90 and −180…180")
    firmware = first(
        FIRMWARE_NAMES, lambda v: isinstance(v, str) and len(v) <= 32 and bool(_FIRMWARE_OK(v))
    )
    if firmware:
        sample.taken["firmware"] = firmware
        versions = [r[firmware] for r in sample.readings if firmware in r]
        sample.notes["mapping.firmware"].append(f"versions, e.g. {_example(versions)}")


def _kind(value: object) -> str:
    """What a JSON value is, in a note's words."""
    if isinstance(value, bool):
        return "true/false"
    if is_number(value):
        return "number"
    return {str: "text", dict: "an object", list: "a list"}.get(type(value), "null")


def _why_not_a_metric(field: str, values: list[Any], total: int) -> str | None:
    """Why ``field`` cannot be a metric of a type whose ``total`` readings gave ``values``."""
    kinds = {_kind(v) for v in values}
    if kinds == {"text"}:
        return f"text, e.g. {_example(values)} ({len(set(values)):,} distinct)"
    if not kinds <= {"number", "true/false"} or (len(kinds) == 2 and not is_binary(values)):
        return f"holds {' and '.join(sorted(kinds))}"
    if len(values) < total:
        return f"in only {len(values):,} of {total:,} readings: a metric is in every one"
    if not is_metric_name(field):
        return (
            "not a name a metric may have (1–32 lower-case letters, digits and _, "
            "not a reading's own field)"
        )
    if not all(usable(v) for v in values):
        return "holds numbers too large to use"
    return None


def _metric(
    field: str, values: list[Any], series: list[list[Any]], devices: int, notes: list[str]
) -> Metric:
    """The metric ``field`` of a type, from its ``values`` and each device's ``series``; what was
    guessed goes to ``notes``."""
    seen = f"guessed from {len(values):,} readings of {devices:,} devices"
    if is_binary(values):
        states = ", ".join(sorted({str(v).lower() for v in values}))
        notes += [f"{seen}: only {states}", "fill in the unit: name the states, e.g. closed/open"]
        return Metric(field, UNKNOWN_UNIT, 0.0, 1.0, "binary")
    low, high = min(values), max(values)
    unit = unit_for(field)
    observed = f"observed {_num(low)}–{_num(high)}{'' if unit == UNKNOWN_UNIT else ' ' + unit}"
    rises = counter_evidence(series)
    if rises is not None:
        lo, hi = widen(low, high)[0], counter_room(high)
        notes.append(
            f"{seen}: {observed}; a counter: it never fell over {rises[0]:,} consecutive "
            f"readings and rose {rises[1]:,} times; max leaves room to grow"
        )
        metric = Metric(field, unit, lo, hi, "counter")
    else:
        lo, hi = widen(low, high, zero_is_a_floor=unit not in NO_FLOOR_UNITS)
        notes.append(f"{seen}: {observed}, widened")
        metric = Metric(field, unit, lo, hi)
    notes.append("fill in the unit" if unit == UNKNOWN_UNIT else "guess: the unit, from the name")
    return metric


def _device_type(
    name: str, rows: list[int], sample: _Sample, devices: dict[str, list[int]], seconds: list[float]
) -> DeviceType | None:
    """Device type ``name`` from its readings (``rows``); None if it has no metric."""
    readings = [sample.readings[i] for i in rows]
    first = set(rows)
    mine = {d: idx for d, idx in devices.items() if idx[0] in first}  # a device has one type
    path = f"types.{name}"
    metrics, ignored = [], []
    for field in sample.free(_fields(readings)):
        values = [r[field] for r in readings if field in r]
        why = _why_not_a_metric(field, values, len(readings))
        if why is not None:
            ignored.append(f"ignored: {_quoted(field)}: {why}")
            continue
        series = _series(sample.readings, mine, field)
        notes = sample.notes[f"{path}.metrics.{field}"]
        metrics.append(_metric(field, values, series, len(mine), notes))
    if not metrics:
        sample.notes[""].append(
            f"no type {name!r}: its {len(readings):,} readings have no numeric field in every "
            "one, so the validator will refuse them"
        )
        return None
    gaps = [g for g in steps([[seconds[i] for i in idx] for idx in mine.values()]) if g > 0]
    notes = sample.notes[f"{path}.interval_s"]
    if gaps:
        every = interval(gaps)
        notes.append(
            f"guess: the median of {len(gaps):,} gaps between a device's readings "
            f"(shortest {_num(min(gaps))} s, longest {_num(max(gaps))} s)"
        )
    else:
        every = PLACEHOLDER_INTERVAL_S
        notes.append("guess: a placeholder, as no device of this type sent two readings")
    sample.notes[f"{path}.extra"] += ignored or ["no other field was seen"]
    return DeviceType(name, tuple(metrics), every, "ignore" if ignored else "refuse")


def fixed_type_name(topic: str) -> str:
    """A type name made from a topic's name ("plant.Pumps-2" → "plant_pumps_2")."""
    name = re.sub(r"[^a-z0-9]+", "_", topic.lower()).strip("_")
    name = name if name[:1].isalpha() else f"t_{name}"
    return name[:32].rstrip("_")


def infer_profiles(
    samples: Sequence[object], topic: str, keys: Sequence[bytes | None] | None = None
) -> Proposal:
    """Profiles proposed from ``samples`` (decoded JSON; what is not an object is skipped) of
    ``topic``, with a note on every guess; ``keys``: the records' keys, checked against the ids.
    InferenceError when no reading, id or time can be found."""
    keep = [i for i, s in enumerate(samples) if isinstance(s, dict)]
    readings: list[dict[str, Any]] = [samples[i] for i in keep]  # type: ignore[misc]
    if not readings:
        raise InferenceError(f"no JSON object among the {len(samples):,} records of {topic}")
    sample = _Sample(readings, defaultdict(list), {})
    fmt, seconds = _find_time(sample)
    ids = _find_id(sample)
    type_field = _find_type(sample, ids)
    devices = _by_device(ids, seconds)
    _find_seq(sample, devices)
    _find_location_and_firmware(sample)
    if keys is not None:
        wrong = sum(keys[i] != d.encode() for i, d in zip(keep, ids, strict=True))
        if wrong:
            sample.notes["mapping.device_id"].append(
                f"{wrong:,} of {len(ids):,} records have another key: the pipeline refuses "
                "records whose key is not their device id"
            )
    groups: dict[str, list[int]] = defaultdict(list)
    for i, reading in enumerate(readings):
        groups[reading[type_field] if type_field else fixed_type_name(topic)].append(i)
    types = [
        t
        for name in sorted(groups)
        if (t := _device_type(name, groups[name], sample, devices, seconds))
    ]
    if not types:
        raise InferenceError(f"no reading of {topic} has a numeric field to declare as a metric")
    if type_field:
        sample.notes["mapping.type"].append(f"{len(groups):,} types: {', '.join(sorted(groups))}")
    else:
        sample.notes["mapping.fixed_type"].append(
            "guess: no field names a device type, so the topic is one type, named after it"
        )
    optional = {k: v for k, v in sample.taken.items() if k in ("seq", "lat", "lon", "firmware")}
    if everywhere := [k for k, v in optional.items() if all(v in r for r in readings)]:
        sample.notes["mapping"].append(
            f"every reading sampled carried {', '.join(everywhere)}: add required = "
            f"[{', '.join(map(toml_string, everywhere))}] to refuse a reading without"
        )
    mapping = Mapping(
        device_id=sample.taken["device_id"],
        time=sample.taken["ts"],
        time_format=fmt,
        type_field=type_field,
        fixed_type=None if type_field else types[0].name,
        fields={k: optional[k] for k in ("seq", "lat", "lon", "firmware") if k in optional},
    )
    sample.notes[""][:0] = _header(topic, len(samples), len(readings), len(devices))
    notes = {path: tuple(lines) for path, lines in sample.notes.items() if lines}
    return Proposal(Profiles(tuple(types), mapping, f"<inferred from {topic}>"), notes)


def _header(topic: str, records: int, readings: int, devices: int) -> list[str]:
    lines = [
        f"Device profiles drafted by `workbench profiles infer` from {readings:,} readings of "
        f"{devices:,} devices on the topic {topic}.",
        'The comments say what was seen: review each guess, and replace every unit = "?" with',
        "the real unit; then `workbench profiles check FILE`, and run with --profiles FILE.",
    ]
    if records > readings:
        lines.append(
            f"{records - readings:,} of {records:,} records were not JSON objects: skipped."
        )
    return lines


def _json(value: bytes | None) -> object:
    """A record's value decoded as JSON, or None when it is not JSON."""
    try:
        return msgspec.json.decode(value or b"")
    except msgspec.DecodeError:
        return None


def sample_topic(
    settings: Settings, topic: str, samples: int, timeout_s: float = 60.0
) -> tuple[list[object], list[bytes | None]]:
    """The latest ``samples`` records of ``topic``: their values decoded as JSON (None where a
    value is not JSON) and their keys."""
    from workbench.explore.recent import read_recent

    records = read_recent(settings, topic, limit=samples, timeout_s=timeout_s)
    return [_json(r.value) for r in records], [r.key for r in records]
