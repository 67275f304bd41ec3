"""Decode and validate raw Kafka records into typed readings; set aside what is malformed, with why.

Decoding and type/range validation happen in one msgspec call per record (~1 µs); the few checks
msgspec cannot express (size, timestamp plausibility) are cheap comparisons around it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec

from workbench.schema import DEVICE_ID_PATTERN, Reading
from workbench.streams.clients import RecordBatch

DEFAULT_MAX_BYTES = 16 * 1024
EARLIEST_TS = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_MAX_FUTURE = timedelta(hours=1)
KNOWN_IDS_LIMIT = 1_000_000
"""Device ids remembered as well-formed (a fleet's worth); beyond it ids are checked every time."""


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
    watermark: datetime | None = None
    """Set by the source: data time every partition has reached, so a device quiet before it
    is really silent rather than on a partition that lags behind."""

    def __len__(self) -> int:
        return len(self.readings)


class ReadingValidator:
    """Turns a ``RecordBatch`` into a ``ReadingBatch``; never raises on bad input."""

    def __init__(
        self,
        max_bytes: int = DEFAULT_MAX_BYTES,
        earliest: datetime = EARLIEST_TS,
        max_future: timedelta = DEFAULT_MAX_FUTURE,
    ) -> None:
        if max_bytes < 64:
            raise ValueError(f"max_bytes={max_bytes}: a reading needs at least 64 bytes")
        if earliest.tzinfo is None:
            raise ValueError("earliest must be timezone-aware (UTC)")
        self.max_bytes = max_bytes
        self.earliest = earliest
        self.max_future = max_future
        self._decode = msgspec.json.Decoder(Reading).decode
        self._id_ok = re.compile(DEVICE_ID_PATTERN).fullmatch
        self._known_ids: set[str] = set()

    def __call__(self, batch: RecordBatch) -> ReadingBatch:
        received_at = time.time()
        latest = datetime.fromtimestamp(received_at, UTC) + self.max_future
        earliest = self.earliest
        max_bytes = self.max_bytes
        decode = self._decode
        known_ids = self._known_ids
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
                if not earliest <= reading.ts <= latest:
                    raise _Refused(_time_reason(reading.ts, earliest, latest))
                if reading.device_id not in known_ids:
                    self._check_new_id(reading.device_id)
            except Exception as exc:  # whatever a hostile payload finds: refuse, never die
                rejected.append(_reject(batch, i, _reason(exc, value)))
                refused_at.append(i)
            else:
                keep(reading)
                keep_ts(batch.timestamps_ms[i])
        latest = _partition_latest(batch.runs, len(batch), refused_at, readings)
        return ReadingBatch(readings, stamps, rejected, received_at, latest)

    def _check_new_id(self, device_id: str) -> None:
        if not self._id_ok(device_id):
            raise _Refused(
                f"schema: device_id {device_id!r} has characters outside A–Z a–z 0–9 . _ : -"
            )
        if len(self._known_ids) < KNOWN_IDS_LIMIT:
            self._known_ids.add(device_id)


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
    partition, offset, key = batch.locate(i)
    return Rejected(batch.topic, partition, offset, key, batch.values[i], reason)


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
