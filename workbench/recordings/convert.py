"""A recording's row as a reading in the profile's wire format, or the reason it cannot be one.

The row's columns are looked up by name: the time column given, the device column given (else the
file is the device), each metric the device type declares by the metric's name, and the optional
reading fields the profile maps (seq, lat, lon, firmware) by their wire names. Every other column
is ignored, so a label column never reaches the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import msgspec

from workbench.profiles.model import DeviceType, Profiles
from workbench.recordings.files import Row
from workbench.recordings.times import parse_time, wire_time

_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class RecordingFormat:
    """How a recording's rows are read: the fleet's profiles and which columns mean what."""

    profiles: Profiles
    device_type: str
    time_column: str
    device_column: str | None = None
    """The column naming each row's device; None: each file is one device."""
    delimiter: str = ","

    def __post_init__(self) -> None:
        try:
            self.profiles.type(self.device_type)
        except KeyError as exc:
            raise ValueError(exc.args[0]) from None
        fixed = self.profiles.mapping.fixed_type
        if fixed is not None and fixed != self.device_type:
            raise ValueError(
                f"--type {self.device_type}: {self.profiles.source} sends every reading as {fixed}"
            )

    @property
    def type(self) -> DeviceType:
        return self.profiles.type(self.device_type)


@dataclass(frozen=True, slots=True)
class Converted:
    """A row that is a reading: its device, its time in the recording, its values by field."""

    row: Row
    device_id: str
    ts: datetime
    values: dict[str, Any]
    """Reading field (seq, lat, lon, firmware, the metrics) → value, as the wire carries it."""


class RowProblem(ValueError):
    """Why a row cannot be a reading (the message says where it is)."""

    def __init__(self, row: Row, reason: str) -> None:
        super().__init__(f"{row.where}: {reason}")
        self.row = row


def _text(value: Any) -> str | None:
    """A cell as text (JSON true/false as ``true``/``false``), None when empty or absent."""
    if value is None:
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value).strip()
    return text or None


def _float(name: str, text: str) -> float:
    try:
        number = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} {text!r} is not a finite number")
    return number


_WORDS = {"true": True, "false": False, "on": True, "off": False}


def _binary(name: str, text: str) -> bool | float:
    state = _WORDS.get(text.lower())
    return _float(name, text) if state is None else state


def _seq(text: str) -> int:
    number = _float("seq", text)
    if not number.is_integer():
        raise ValueError(f"seq {text!r} is not a whole number")
    return int(number)


class RowConverter:
    """Turns rows of one recording into readings of one device type."""

    def __init__(self, form: RecordingFormat) -> None:
        self.form = form
        self.mapping = form.profiles.mapping
        self._metrics = form.type.metrics
        self._optional: dict[str, Callable[[str], Any]] = {
            "seq": _seq,
            "lat": lambda text: _float("lat", text),
            "lon": lambda text: _float("lon", text),
            "firmware": lambda text: text,
        }

    def convert(self, row: Row, device_id: str | None) -> Converted:
        """The row as a reading of ``device_id`` (None: the row's device column says);
        RowProblem saying why not."""
        if row.fields is None:
            raise RowProblem(row, row.problem or "unreadable")
        try:
            return self._convert(row, device_id)
        except ValueError as exc:
            raise RowProblem(row, str(exc)) from None

    def _convert(self, row: Row, device_id: str | None) -> Converted:
        fields = row.fields or {}
        form = self.form
        if device_id is None:
            device_id = _text(fields.get(form.device_column or ""))
            if device_id is None:
                raise ValueError(f"no device id in column {form.device_column!r}")
        ts = parse_time(fields.get(form.time_column), self.mapping)
        values: dict[str, Any] = {}
        for name, wire in self.mapping.fields.items():
            cell = _text(fields.get(wire))
            if cell is not None:
                values[name] = self._optional[name](cell)
            elif name in self.mapping.required:
                raise ValueError(f"no {name} in column {wire!r}")
        for metric in self._metrics:
            cell = _text(fields.get(metric.name))
            if cell is None:
                raise ValueError(f"no value for metric {metric.name}")
            parse = _binary if metric.kind == "binary" else _float
            values[metric.name] = parse(metric.name, cell)
        return Converted(row, device_id, ts, values)

    def wire(self, reading: Converted, shift: timedelta = timedelta(0)) -> bytes:
        """The reading as the profile's wire format has it, its time moved by ``shift``."""
        mapping = self.mapping
        message: dict[str, Any] = {
            mapping.device_id: reading.device_id,
            mapping.time: wire_time(reading.ts + shift, mapping),
        }
        if mapping.type_field is not None:
            message[mapping.type_field] = self.form.device_type
        for name, value in reading.values.items():
            message[mapping.fields.get(name, name)] = value
        return _encoder.encode(message)
