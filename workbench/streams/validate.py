"""Decode and validate raw Kafka records into typed readings; set aside what is malformed, with why.

Decoding and type/range validation happen in one msgspec call per record (~1 µs); the few checks
msgspec cannot express (size, duplicate fields, timestamp plausibility, the text patterns, the key
being the device id) are cheap comparisons or cached lookups around it.
"""

from __future__ import annotations

import bisect
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from workbench.profiles.active import active
from workbench.profiles.compile import CompiledProfiles
from workbench.schema import DEVICE_ID_PATTERN, FIRMWARE_PATTERN, Reading
from workbench.streams.clients import RecordBatch

DEFAULT_MAX_BYTES = 16 * 1024
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_MAX_FUTURE = timedelta(hours=1)
KNOWN_IDS_LIMIT = 1_000_000
"""Devices remembered as checked (a fleet's worth); beyond it new ones are checked every time."""
REASON_LIMIT = 300
"""Characters of a reason kept (it quotes the record's own text, which may be 16 KiB)."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that is not a valid reading: the original bytes, where it came from, and why."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass(slots=True)
class ReadingBatch:
    """What the source emits: the valid readings of one poll, in Kafka order per partition."""

    readings: list[Reading]
    timestamps_ms: list[int]
    """Kafka record timestamp of each reading, ms since the epoch (for end-to-end latency)."""
    rejected: list[Rejected] = field(default_factory=list)
    received_at: float = field(default_factory=time.time)
    partition_latest: dict[int, datetime] = field(default_factory=dict)
    """partition → time of its last valid reading in this batch (for the source's watermark)."""
    runs: list[tuple[int, int]] = field(default_factory=list)
    """(partition, index of its first reading) for each run of readings from one partition."""
    watermark: datetime | None = None
    """Set by the source: data time every partition has reached, so a device quiet before it
    is really silent rather than on a partition that lags behind."""

    def __len__(self) -> int:
        return len(self.readings)

    def partitions(self) -> Iterator[tuple[int, list[Reading]]]:
        """(partition, its readings) for each run of readings from one partition."""
        ends = [start for _, start in self.runs[1:]] + [len(self.readings)]
        for (partition, start), end in zip(self.runs, ends, strict=True):
            if end > start:
                yield partition, self.readings[start:end]


class ReadingValidator:
    """Turns a ``RecordBatch`` into a ``ReadingBatch``; never raises on bad input."""

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        earliest: datetime = EARLIEST_TS,
        max_future: timedelta = DEFAULT_MAX_FUTURE,
        profiles: CompiledProfiles | None = None,
    ) -> None:
        """``profiles``: the fleet's device types and wire format (default: the process's)."""
        if max_bytes < 64:
            raise ValueError(f"max_bytes={max_bytes}: a reading needs at least 64 bytes")
        if earliest.tzinfo is None:
            raise ValueError("earliest must be timezone-aware (UTC)")
        self.max_bytes = max_bytes
        self.earliest = earliest
        self.max_future = max_future
        profiles = profiles or active()
        self._decode = profiles.decode
        self._id_ok = re.compile(DEVICE_ID_PATTERN).fullmatch
        self._firmware_ok = re.compile(FIRMWARE_PATTERN).fullmatch
        self._known: dict[str, tuple[bytes, str]] = {}
        """Device id → (key, firmware) of its last reading that passed every check."""
        self._quotes = {t: _quote_count(t) for t in profiles.types.values()}

    def __call__(self, batch: RecordBatch) -> ReadingBatch:
        received_at = time.time()
        latest = datetime.fromtimestamp(received_at, UTC) + self.max_future
        earliest = self.earliest
        max_bytes = self.max_bytes
        decode = self._decode
        quotes = self._quotes
        known = self._known
        keys = batch.keys
        readings: list[Reading] = []
        stamps: list[int] = []
        rejected: list[Rejected] = []
        refused_at: list[int] = []
        keep = readings.append
        keep_ts = stamps.append
        for i, value in enumerate(batch.values):
            try:
                if value is None or len(value) > max_bytes:
                    raise _Refused(_size_reason(value, max_bytes))
                reading = decode(value)
                if value.count(b'"') != quotes[type(reading)]:
                    _check_unique_fields(value)
                if not earliest <= reading.ts <= latest:
                    raise _Refused(_time_reason(reading.ts, earliest, latest))
                seen = known.get(reading.device_id)
                if seen is None or seen[0] != keys[i] or seen[1] != reading.firmware:
                    self._check_device(reading, keys[i])
            except Exception as exc:  # whatever a hostile payload finds: refuse, never die
                rejected.append(_reject(batch, i, _reason(exc, value)))
                refused_at.append(i)
            else:
                keep(reading)
                keep_ts(batch.timestamps_ms[i])
        latest = _partition_latest(batch.runs, len(batch), refused_at, readings)
        runs = [(p, start - bisect.bisect_left(refused_at, start)) for p, start in batch.runs]
        return ReadingBatch(readings, stamps, rejected, received_at, latest, runs)

    def _check_device(self, reading: Reading, key: bytes | None) -> None:
        """Refuse a reading whose id or firmware has other characters or whose key is not its id;
        remember a device that passes, so its next readings cost one lookup."""
        device_id, firmware = reading.device_id, reading.firmware
        if not self._id_ok(device_id):
            raise _Refused(
                f"schema: device_id {device_id!r} has characters outside A–Z a–z 0–9 . _ : -"
            )
        if key != device_id.encode():
            raise _Refused(_key_reason(key, device_id))
        if firmware is not None and not self._firmware_ok(firmware):
            raise _Refused(
                f"schema: firmware {firmware!r} is not a version: it must start with a letter or "
                "digit and hold only A–Z a–z 0–9 . _ + -"
            )
        if len(self._known) < KNOWN_IDS_LIMIT or device_id in self._known:
            self._known[device_id] = (key, firmware)


def _quote_count(reading_type: type) -> int:
    """Quote characters in a valid reading of this type: two per field name and two per text value
    (device_type is both). No accepted text can hold a quote, so more means a repeated field."""
    fields = msgspec.inspect.type_info(reading_type).fields  # type: ignore[attr-defined]
    texts = (msgspec.inspect.StrType, msgspec.inspect.DateTimeType)
    n_texts = sum(isinstance(getattr(f.type, "type", f.type), texts) for f in fields)
    return 2 * (len(fields) + 1) + 2 * (n_texts + 1)


def _check_unique_fields(value: bytes) -> None:
    """Refuse an object that names a field twice (msgspec keeps the last; other readers the first).

    Only called when the quote count is off, so the slower exact parse is rare.
    """
    repeated: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict:
        repeated.extend(k for k, n in Counter(k for k, _ in items).items() if n > 1)
        return dict(items)

    json.loads(value, object_pairs_hook=pairs)
    if repeated:
        names = ", ".join(f"`{k}`" for k in repeated)
        raise _Refused(f"duplicate field: {names} appears more than once in the object")


def _key_reason(key: bytes | None, device_id: str) -> str:
    shown = "none" if key is None else repr(key[:80])
    return (
        f"wrong key: {shown}, but the device id is {device_id!r} (readings are keyed by device "
        "id, so one device's readings stay in order on one partition)"
    )


def _reason(exc: Exception, value: bytes | None) -> str:
    """Why a record was refused, in words, from what decoding or checking raised.

    Bad UTF-8 is told apart from bad JSON by decoding the bytes ourselves (only on this failure
    path), so the reason does not depend on how a msgspec release words or classes the error.
    """
    if isinstance(exc, msgspec.ValidationError):
        return f"schema: {exc}"
    if isinstance(exc, msgspec.DecodeError | UnicodeDecodeError):
        try:
            (value or b"").decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"invalid UTF-8: {bad.reason} at byte {bad.start:,}"
        return f"malformed JSON: {exc}"
    if isinstance(exc, _Refused):
        return str(exc)
    return f"undecodable: {type(exc).__name__}: {exc}"


def _partition_latest(
    runs: list[tuple[int, int]], n: int, refused_at: list[int], readings: list[Reading]
) -> dict[int, datetime]:
    """Each partition's last valid reading time, worked out after the fact (rejects are rare)."""
    refused = set(refused_at)
    latest: dict[int, datetime] = {}
    if not runs:  # no record at all
        return latest
    ends = [start for _, start in runs[1:]] + [n]
    for (partition, start), end in zip(runs, ends, strict=True):
        last = next((i for i in range(end - 1, start - 1, -1) if i not in refused), None)
        if last is None:
            continue
        ts = readings[last - sum(1 for r in refused_at if r < last)].ts
        latest[partition] = max(ts, latest.get(partition, ts))
    return latest


class _Refused(Exception):
    """A record failed a check outside the schema."""


def _reject(batch: RecordBatch, i: int, reason: str) -> Rejected:
    partition, offset = batch.locate(i)
    return Rejected(batch.topic, partition, offset, batch.keys[i], batch.values[i], _shown(reason))


def _shown(reason: str) -> str:
    """The reason as safe text for a header, a log or a terminal: control characters escaped
    (messages quote the record's own text), at most ``REASON_LIMIT`` characters."""
    if not reason.isprintable():
        reason = "".join(c if c.isprintable() else repr(c)[1:-1] for c in reason)
    return reason if len(reason) <= REASON_LIMIT else reason[: REASON_LIMIT - 1] + "…"


def _size_reason(value: bytes | None, max_bytes: int) -> str:
    if value is None:
        return "empty: the record has no value (tombstone)"
    return f"oversize: {len(value):,} bytes, the limit is {max_bytes:,} bytes"


def _time_reason(ts: datetime, earliest: datetime, latest: datetime) -> str:
    if ts < earliest:
        return f"implausible timestamp: {ts.isoformat()} is before {earliest.isoformat()}"
    ahead = (ts - latest).total_seconds()
    return f"implausible timestamp: {ts.isoformat()} is {ahead:,.0f} s past the allowed clock skew"


def reject_all(batch: RecordBatch, reason: str) -> list[Rejected]:
    """Every record of a batch as rejected (when the pipeline itself failed on it)."""
    return [_reject(batch, i, reason) for i in range(len(batch))]
