"""``workbench bench fuzz``: hostile readings through the real pipeline on real Kafka.

A seeded generator makes malformed or hostile records of many families, mixed with valid simulator
readings (some in odd but legal encodings); each record carries its family and case number in
headers. They are produced to a fresh topic and consumed by the live pipeline (source → validation
→ dead letters → detection with the ensemble → alerts). Then the dead-letter topic is read back to
check that every hostile record is there once, with a reason and its original bytes, that every
valid reading went through detection, and that the pipeline never stopped.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import msgspec

from workbench.alerts.publish import AlertPublisher
from workbench.bench.ingest import peak_rss_mb
from workbench.config import Settings
from workbench.explore.recent import Record, read_recent
from workbench.models.ensemble import EnsembleDetector
from workbench.schema import DEVICE_TYPES, MAX_SEQ
from workbench.simulator import simulate
from workbench.simulator.fleet import BOUNDS
from workbench.streams.clients import RecordBatch, deliver, make_producer
from workbench.streams.deadletter import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON
from workbench.streams.detect import DetectionStage
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import ensure_topics
from workbench.streams.validate import DEFAULT_MAX_BYTES, ReadingBatch, ReadingValidator

FAMILY_HEADER = "workbench.fuzz.family"
CASE_HEADER = "workbench.fuzz.case"
VALID = "valid"
VALID_EDGE = "valid_edge"
"""Valid readings written in odd but legal ways (bounds, -0, escapes, order, times far apart)."""
EDGE_SHARE = 0.2
"""Share of the valid readings that are written the odd way."""
STALL_S = 60.0
"""The pipeline is declared stuck when it has handled nothing new for this long."""
READ_BACK_S = 600.0
"""Longest wait for a topic to be read back."""

STRING_FIELDS = ("device_type", "device_id", "ts", "firmware")
TEXT_FIELDS = ("device_id", "firmware")
"""Free text from the device: it ends up in HTML, CSV exports and file names."""
BAD_UTF8 = (
    b"\xff",
    b"\xfe\xff",
    b"\x80",
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",  # overlong '/', three bytes
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xe2\x82",  # truncated sequence
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\xf8\x88\x80\x80\x80",  # five-byte form
)
HUGE_NUMBERS = (
    b"1e400",
    b"-1e400",
    b"1e99999999999999999999",
    b"1" + b"0" * 5000,
    b"-" + b"9" * 5000,
    b"9" * 309,
    b"9" * 4300,
    b"18446744073709551616",
    b"NaN",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"inf",
)
CONTROL = ("\x00", "\x01", "\x07", "\x08", "\t", "\n", "\r", "\x1b[2J", "\x7f", "\x85")
CONTROL += ("\u2028", "\u202e", "\ufeff", "\u200b")
MARKUP = (
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '"><svg/onload=alert(1)>',
    "<iframe src=//evil.example>",
    "javascript:alert(1)",
)
FORMULAS = (
    "=cmd|' /C calc'!A0",
    "=1+1",
    "+1+1",
    "-1+1",
    "@SUM(1+1)",
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://evil.example","x")',
    "\t=1+1",
    "\r=1+1",
)
WRONG_FOR_NUMBER = (b'"12"', b"true", b"false", b"null", b"[]", b"{}", b"[1]", b'{"v":1}')
WRONG_FOR_TEXT = (b"12", b"-1.5", b"true", b"null", b"[]", b'["x"]', b'{"a":"b"}')
WRONG_DOCUMENTS = (b'"a reading"', b"123", b"null", b"true", b"[]", b"[{}]")
UNKNOWN_TYPES = (
    "toaster",
    "",
    "Thermostat",
    "THERMOSTAT",
    " thermostat",
    "thermostat ",
    "smart-meter",
    "smart_meter_v2",
    "therm\u03bfstat",  # Greek omicron
    "__proto__",
    "constructor",
    "null",
    "env_sensor\x00",
)
FAR_TIMES = (
    "0001-01-01T00:00:00Z",
    "1900-01-01T00:00:00+00:00",
    "1970-01-01T00:00:00Z",
    "1999-12-31T23:59:59.999999Z",
    "2100-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "+275760-09-13T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-01-01T00:00:00",
    "",
    "yesterday",
)


@dataclass(frozen=True, slots=True)
class FuzzRecord:
    """One record of the campaign: its family, Kafka key and value, and for a record that
    decodes to a reading, that reading's (device_id, seq)."""

    family: str
    key: bytes | None
    value: bytes | None
    reading: tuple[str, int] | None = None

    @property
    def hostile(self) -> bool:
        """Whether the pipeline must refuse it."""
        return self.family not in (VALID, VALID_EDGE)


Template = dict[str, object]
"""A valid reading as plain JSON-able values, the starting point of a hostile record."""
KeyValue = tuple[bytes | None, bytes | None]
Family = Callable[[random.Random, Template], KeyValue]


def _json(value: object) -> bytes:
    return msgspec.json.encode(value)


def _object(pairs: list[tuple[str, bytes]]) -> bytes:
    """A JSON object from (name, raw JSON value) pairs: any order, duplicates, raw tokens."""
    return b"{" + b",".join(_json(k) + b":" + v for k, v in pairs) + b"}"


def _pairs(t: Template, **raw: bytes) -> list[tuple[str, bytes]]:
    """The template's fields as pairs, with some values replaced by raw JSON."""
    return [(k, raw.get(k, _json(v))) for k, v in t.items()]


def _key(t: Template) -> bytes:
    return str(t["device_id"]).encode()


def _numeric_fields(t: Template) -> list[str]:
    return [k for k, v in t.items() if isinstance(v, int | float)]


def _random_bytes(rng: random.Random, t: Template) -> KeyValue:
    return _key(t), rng.randbytes(rng.randint(1, 4096))


def _invalid_utf8(rng: random.Random, t: Template) -> KeyValue:
    name = rng.choice(STRING_FIELDS)
    text = _json(t[name])
    at = rng.randint(1, len(text) - 1)  # inside the quotes
    return _key(t), _object(_pairs(t, **{name: text[:at] + rng.choice(BAD_UTF8) + text[at:]}))


def _truncated_json(rng: random.Random, t: Template) -> KeyValue:
    whole = _object(_pairs(t))
    return _key(t), whole[: rng.randint(1, len(whole) - 1)]


def _deep_nesting(rng: random.Random, t: Template) -> KeyValue:
    if rng.random() < 0.05:  # far past the size limit: refused before any parsing
        return _key(t), b"[" * 100_000
    shape = rng.randrange(1, 4)
    if shape == 1:
        depth = rng.randint(1_000, 8_000)
        return _key(t), b"[" * depth + b"]" * depth
    if shape == 2:  # in a field's value, within the size limit
        depth = rng.randint(1_000, 7_500)
        return _key(t), _object(_pairs(t, **{rng.choice(list(t)): b"[" * depth + b"]" * depth}))
    depth = rng.randint(1_000, 2_500)
    nested = b'{"a":' * depth + b"1" + b"}" * depth
    return _key(t), _object([*_pairs(t), ("extra", nested)])


def _huge_numbers(rng: random.Random, t: Template) -> KeyValue:
    hostile, *others = rng.sample(_numeric_fields(t), 2)
    raw = {hostile: rng.choice(HUGE_NUMBERS)}
    for name in others:  # negative zero, legal on its own, beside the hostile number
        raw[name] = b"-0" if name == "seq" else rng.choice((b"-0", b"-0.0", b"-0e999"))
    return _key(t), _object(_pairs(t, **raw))


def _control_chars(rng: random.Random, t: Template) -> KeyValue:
    name = rng.choice(STRING_FIELDS if rng.random() < 0.2 else TEXT_FIELDS)
    text = str(t[name])
    at = rng.randint(0, len(text))
    hostile = text[:at] + rng.choice(CONTROL) + text[at:]
    raw = _json(hostile) if rng.random() < 0.5 else b'"' + hostile.encode() + b'"'
    return _key(t), _object(_pairs(t, **{name: raw}))


def _in_string_fields(
    rng: random.Random, t: Template, texts: tuple[str, ...], names: tuple[str, ...]
) -> KeyValue:
    """``t`` with hostile text in one of ``names``, or in all of them at once."""
    chosen = names if rng.random() < 0.25 else (rng.choice(names),)
    return _key(t), _object(_pairs(t, **{n: _json(rng.choice(texts)) for n in chosen}))


def _markup(rng: random.Random, t: Template) -> KeyValue:
    return _in_string_fields(rng, t, MARKUP, STRING_FIELDS)


def _formulas(rng: random.Random, t: Template) -> KeyValue:
    return _in_string_fields(rng, t, FORMULAS, TEXT_FIELDS)


def _wrong_types(rng: random.Random, t: Template) -> KeyValue:
    if rng.random() < 0.1:
        return _key(t), rng.choice(WRONG_DOCUMENTS)
    name = rng.choice(list(t))
    wrong = WRONG_FOR_NUMBER if isinstance(t[name], int | float) else WRONG_FOR_TEXT
    return _key(t), _object(_pairs(t, **{name: rng.choice(wrong)}))


def _missing_fields(rng: random.Random, t: Template) -> KeyValue:
    names = list(t)
    gone = set(rng.sample(names, rng.randint(1, len(names))))
    return _key(t), _object([(k, v) for k, v in _pairs(t) if k not in gone])


def _unknown_device_type(rng: random.Random, t: Template) -> KeyValue:
    invented = "x_" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(1, 20)))
    kind = rng.choice((*UNKNOWN_TYPES, invented))
    return _key(t), _object(_pairs(t, device_type=_json(kind)))


def _oversize(rng: random.Random, t: Template) -> KeyValue:
    size = rng.randint(64 * 1024, 256 * 1024) if rng.random() < 0.02 else DEFAULT_MAX_BYTES + 1
    size += 0 if size > DEFAULT_MAX_BYTES + 1 else rng.randrange(8 * 1024)
    shape = rng.randrange(3)
    if shape == 0:  # a valid reading, padded with whitespace
        whole = _object(_pairs(t))
        return _key(t), whole + b" " * max(0, size - len(whole))
    if shape == 1:
        return _key(t), _object(_pairs(t, firmware=_json("x" * size)))
    return _key(t), _object([*_pairs(t), ("padding", _json("x" * size))])


def _far_timestamp(rng: random.Random, t: Template) -> KeyValue:
    now = datetime.fromisoformat(str(t["ts"]))
    shifts = (timedelta(hours=2), timedelta(days=3650), -timedelta(days=40 * 365))
    times = (*FAR_TIMES, *((now + s).isoformat() for s in shifts))
    raw = _json(rng.choice(times)) if rng.random() < 0.9 else b"1704067200"
    return _key(t), _object(_pairs(t, ts=raw))


def _empty(rng: random.Random, t: Template) -> KeyValue:
    return _key(t), None if rng.random() < 0.75 else b""


def _key_mismatch(rng: random.Random, t: Template) -> KeyValue:
    own = _key(t)
    keys = (None, b"", own.upper(), own + b"\x00", own + b" ", b"other-device", b"\xff\xfe")
    key = rng.choice((*keys, rng.randbytes(16), _object(_pairs(t))))
    return key, _object(_pairs(t))


def _duplicate_keys(rng: random.Random, t: Template) -> KeyValue:
    pairs = _pairs(t)
    name = rng.choice(list(t))
    again = _json(t[name]) if rng.random() < 0.5 else _json(_other_value(name, t[name]))
    pairs.insert(rng.randint(0, len(pairs)), (name, again))
    return _key(t), _object(pairs)


def _other_value(name: str, value: object) -> object:
    """Another valid value for the field (what a parser that keeps the last one would see)."""
    if name == "device_type":
        return next(k for k in DEVICE_TYPES if k != value)
    if name == "ts":
        return (datetime.fromisoformat(str(value)) + timedelta(seconds=1)).isoformat()
    if isinstance(value, str):
        return value + "b"
    return 0 if value else 1


FAMILIES: dict[str, Family] = {
    "random_bytes": _random_bytes,
    "invalid_utf8": _invalid_utf8,
    "truncated_json": _truncated_json,
    "deep_nesting": _deep_nesting,
    "huge_numbers": _huge_numbers,
    "control_chars": _control_chars,
    "markup": _markup,
    "formulas": _formulas,
    "wrong_types": _wrong_types,
    "missing_fields": _missing_fields,
    "unknown_device_type": _unknown_device_type,
    "oversize": _oversize,
    "far_timestamp": _far_timestamp,
    "empty": _empty,
    "key_mismatch": _key_mismatch,
    "duplicate_keys": _duplicate_keys,
}
"""Hostile record families: each makes records the pipeline must dead-letter."""


def _edge(rng: random.Random, t: Template, n: int) -> FuzzRecord:
    """A valid reading written in an odd but legal way (``n`` keeps its identity unique)."""
    shape = rng.randrange(10)
    metrics = [k for k in t if k in BOUNDS]
    pairs = _pairs(t)
    if shape == 0:  # pretty-printed, newlines and indentation
        value = json.dumps(t, indent=2).encode()
    elif shape == 1:  # the type tag last
        value = _object(pairs[::-1])
    elif shape == 2:  # the id spelled in \u escapes
        escaped = "".join(f"\\u{ord(c):04x}" for c in str(t["device_id"]))
        value = _object(_pairs(t, device_id=f'"{escaped}"'.encode()))
    elif shape == 3:  # a metric at a bound of its range, written as an integer
        name = rng.choice(metrics)
        value = _object(_pairs(t, **{name: b"%d" % rng.choice(BOUNDS[name])}))
    elif shape == 4:  # negative zero wherever zero is allowed
        zeros = [k for k in metrics if BOUNDS[k][0] <= 0]
        value = _object(_pairs(t, **dict.fromkeys(zeros, b"-0.0")))
    elif shape == 5:  # at a pole, on the date line
        value = _object(_pairs(t, lat=b"-90", lon=b"180.0e0"))
    elif shape == 6:  # the largest sequence numbers a reading may carry
        t = {**t, "seq": MAX_SEQ - n}
        value = _object(_pairs(t))
    elif shape == 7:  # the earliest time allowed, or 30 minutes ahead
        ahead = datetime.fromisoformat(str(t["ts"])) + timedelta(minutes=30)
        ts = "2000-01-01T00:00:00Z" if rng.random() < 0.5 else ahead.isoformat()
        value = _object(_pairs(t, ts=_json(ts)))
    elif shape == 8:  # the same instant at another UTC offset
        offset = timezone(timedelta(hours=rng.choice((-12, 5.5, 14))))
        local = datetime.fromisoformat(str(t["ts"])).astimezone(offset)
        value = _object(_pairs(t, ts=_json(local.isoformat())))
    else:  # the longest id, every allowed punctuation mark
        t = {**t, "device_id": (f"{t['device_id']}._:-" + "z" * 64)[:64]}
        value = _object(_pairs(t))
    return FuzzRecord(VALID_EDGE, _key(t), value, (str(t["device_id"]), int(t["seq"])))


def generate(count: int, valid_share: float, seed: int, now: datetime) -> list[FuzzRecord]:
    """``count`` records, about ``valid_share`` of them valid simulator readings (in order per
    device), the rest hostile, the families in equal parts; the same for the same arguments."""
    if count < 1 or not 0.0 <= valid_share <= 1.0:
        raise ValueError(f"count={count}, valid_share={valid_share}: want ≥ 1 and 0–1")
    rng = random.Random(seed)
    n_valid = round(count * valid_share)
    valid = _valid_readings(rng, n_valid, seed, now)
    hostile = _hostile_records(rng, count - n_valid, seed, now)
    slots = [True] * n_valid + [False] * (count - n_valid)
    rng.shuffle(slots)
    valid_it, hostile_it = iter(valid), iter(hostile)
    return [next(valid_it) if is_valid else next(hostile_it) for is_valid in slots]


def _valid_readings(rng: random.Random, n: int, seed: int, now: datetime) -> list[FuzzRecord]:
    if n == 0:
        return []
    rate = 1000.0
    start = now - timedelta(seconds=n / rate + 60)
    out = []
    for i, (reading, _truth) in enumerate(simulate(200, rate, n, seed=seed, start=start)):
        t = msgspec.to_builtins(reading)
        if rng.random() < EDGE_SHARE:
            out.append(_edge(rng, t, i))
        else:
            identity = (reading.device_id, reading.seq)
            out.append(FuzzRecord(VALID, _key(t), _object(_pairs(t)), identity))
    return out


def _hostile_records(rng: random.Random, n: int, seed: int, now: datetime) -> list[FuzzRecord]:
    start = now - timedelta(minutes=5)
    fleet = simulate(40, 100.0, 40, seed=seed, start=start)
    templates = [msgspec.to_builtins(r) for r, _ in fleet]
    names = list(FAMILIES)
    out = []
    for case in range(n):
        family = names[case % len(names)]
        # Each template gets an id and seq of its own, so a record that got through is traced.
        t = {**rng.choice(templates), "device_id": f"fuzz-{case:06d}", "seq": case}
        key, value = FAMILIES[family](rng, t)
        out.append(FuzzRecord(family, key, value, (str(t["device_id"]), case)))
    rng.shuffle(out)
    return out


# -- the campaign ------------------------------------------------------------------------------


@dataclass
class PipelineRun:
    """What the live pipeline did with the campaign's records."""

    processed: Counter[tuple[str, int]]
    """(device_id, seq) of each reading detection processed → how many times."""
    alive: bool
    """The source was still consuming when every record had been handled."""
    stalled: bool
    seconds: float
    """First records polled → last batch handled, s (the consumer group's join is not timed)."""
    status: str
    errors: int
    last_error: str | None
    findings: int
    alerts: int


@dataclass
class DeadLetter:
    """One record read back from the dead-letter topic."""

    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes
    reason: str


@dataclass
class Tally:
    """Per-family outcome of the campaign."""

    records: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    missing: int = 0
    processed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


_DETAIL = re.compile(
    r"[+-]?\d{4,}-\d\d-\d\d[T ][\d:.]+(?:[+-]\d\d:\d\d|Z)?|'[^']*'|\"[^\"]*\""
    r"|(?<![\w–-])\d[\d,.]*(?![\w–])"
)


def reason_kind(reason: str) -> str:
    """A dead-letter reason without its particulars (values, times, positions), for counting."""
    return _DETAIL.sub("…", reason)[:120]


def tally(
    records: list[FuzzRecord],
    positions: dict[tuple[int, int], int],
    deadletters: list[DeadLetter],
    processed: Counter[tuple[str, int]],
) -> dict[str, object]:
    """Check the campaign's outcome: which records were dead-lettered (once, with a reason, byte
    for byte), which readings detection processed, what is missing and what is extra."""
    families = {name: Tally() for name in (VALID, VALID_EDGE, *FAMILIES)}
    copies: Counter[int] = Counter()
    problems = Counter({"without_reason": 0, "bytes_changed": 0, "unknown_origin": 0})
    for letter in deadletters:
        case = positions.get((letter.partition, letter.offset))  # type: ignore[arg-type]
        if case is None:
            problems["unknown_origin"] += 1
            continue
        copies[case] += 1
        record = records[case]
        if not letter.reason.strip():
            problems["without_reason"] += 1
        if (letter.key, letter.value) != (record.key, record.value or b""):
            problems["bytes_changed"] += 1
        if copies[case] == 1:
            families[record.family].reasons[reason_kind(letter.reason)] += 1
    owner = {r.reading: r for r in records if r.reading is not None}
    unattributed = 0
    for identity, times in processed.items():
        record = owner.get(identity)
        if record is None:
            unattributed += times
            continue
        families[record.family].processed += 1
    for case, record in enumerate(records):
        t = families[record.family]
        t.records += 1
        if copies[case]:
            t.dead_lettered += 1
            t.duplicates += copies[case] - 1
        elif record.hostile or processed[record.reading] == 0:  # type: ignore[index]
            t.missing += 1
    valid_duplicates = sum(
        max(0, processed[r.reading] - 1)  # type: ignore[index]
        for r in records
        if not r.hostile
    )
    hostile = [t for name, t in families.items() if name in FAMILIES]
    valid = [families[VALID], families[VALID_EDGE]]
    return {
        "families": {
            name: {
                "records": t.records,
                "dead_lettered": t.dead_lettered,
                "duplicates": t.duplicates,
                "missing": t.missing,
                "processed": t.processed,
                "top_reasons": t.reasons.most_common(3),
            }
            for name, t in families.items()
        },
        "hostile_missing": sum(t.missing for t in hostile),
        "hostile_processed": sum(t.processed for t in hostile) + unattributed,
        "valid_missing": sum(t.missing for t in valid),
        "valid_dead_lettered": sum(t.dead_lettered for t in valid),
        "duplicates": {
            "dead_letters": sum(t.duplicates for t in families.values()),
            "readings_processed": valid_duplicates,
        },
        "dead_letter_problems": dict(problems),
    }


def _read_all(settings: Settings, topic: str) -> list[Record]:
    return read_recent(settings, topic, limit=sys.maxsize, timeout_s=READ_BACK_S)


def _positions(settings: Settings, topic: str) -> dict[tuple[int, int], int]:
    """(partition, offset) → case number of every record produced to the readings topic."""
    return {
        (r.partition, r.offset): int(dict(r.headers)[CASE_HEADER])
        for r in _read_all(settings, topic)
    }


def _deadletters(settings: Settings, topic: str) -> list[DeadLetter]:
    out = []
    for r in _read_all(settings, topic):
        headers = dict(r.headers)
        partition, offset = headers.get(HEADER_PARTITION), headers.get(HEADER_OFFSET)
        out.append(
            DeadLetter(
                None if partition is None else int(partition),
                None if offset is None else int(offset),
                r.key,
                r.value or b"",
                headers.get(HEADER_REASON, b"").decode(errors="replace"),
            )
        )
    return out


class _ClockedValidator(ReadingValidator):
    """The live validator, noting when the first records arrived (where the rate is timed from)."""

    first_at: float | None = None
    """Unix time (s) of the first batch's validation."""

    def __call__(self, batch: RecordBatch) -> ReadingBatch:
        self.first_at = self.first_at or time.time()
        return super().__call__(batch)


async def _run_pipeline(settings: Settings, topics: dict[str, str], count: int) -> PipelineRun:
    """The live pipeline's wiring (source → dead letters, detection → alerts) on the topics,
    until every record is handled, the source stops, or nothing moves for ``STALL_S``."""
    producer = make_producer(settings, client_id="workbench-fuzz-alerts")
    stage = DetectionStage(EnsembleDetector(), publisher=AlertPublisher(producer, topics["alerts"]))
    clocked = _ClockedValidator()
    source = from_kafka_readings(
        settings,
        topic=topics["readings"],
        group_id=f"fuzz-{uuid.uuid4().hex[:8]}",
        validator=clocked,
        deadletter_topic=topics["deadletter"],
    )
    processed: Counter[tuple[str, int]] = Counter()

    async def detect(batch: ReadingBatch) -> None:
        await stage(batch)
        processed.update((r.device_id, r.seq) for r in batch.readings)

    source.sink(detect)
    source.start()
    moved, seen = time.monotonic(), 0
    try:
        while seen < count and not source.finished.is_set():
            await asyncio.sleep(0.05)
            handled = source.metrics.total + source.metrics.dead_lettered
            if handled > seen:
                moved, seen = time.monotonic(), handled
            elif time.monotonic() - moved > STALL_S:
                break
        alive = not source.finished.is_set() and source.metrics.status == "consuming"
    finally:
        source.stop()
        await source.wait_stopped()
        stage.close()
        producer.close()
    m = source.metrics
    began = clocked.first_at
    return PipelineRun(
        processed,
        alive,
        seen < count and alive,
        (m.last_update or 0.0) - began if began else 0.0,
        m.status,
        m.errors,
        m.last_error,
        stage.findings,
        len(stage.manager.history),
    )


def run_fuzz(
    settings: Settings,
    count: int = 100_000,
    valid_share: float = 0.1,
    seed: int = 1,
    progress: Callable[[str], None] = print,
) -> dict[str, object]:
    """Run the campaign on a fresh set of topics; the figures and verdict as one JSON-able dict."""
    began = time.perf_counter()
    run = uuid.uuid4().hex[:8]
    topics = {k: f"workbench.fuzz.{run}.{k}" for k in ("readings", "deadletter", "alerts")}
    ensure_topics(settings, {topics["readings"]: 6, topics["deadletter"]: 1, topics["alerts"]: 3})
    progress(f"generating {count:,} records (seed {seed}, {valid_share:.0%} valid)…")
    records = generate(count, valid_share, seed, datetime.now(UTC))
    volume = sum(len(r.value or b"") for r in records)
    progress(f"producing them to {topics['readings']} ({volume / 1e6:,.1f} MB)…")
    t0 = time.perf_counter()
    producer = make_producer(settings, client_id="workbench-fuzz")
    try:
        deliver(
            producer,
            topics["readings"],
            (
                (r.key, r.value, [(FAMILY_HEADER, r.family.encode()), (CASE_HEADER, b"%d" % i)])
                for i, r in enumerate(records)
            ),
        )
    finally:
        producer.close()
    produce_s = time.perf_counter() - t0
    progress(f"running the pipeline ({settings.backend}) over them…")
    pipeline = asyncio.run(_run_pipeline(settings, topics, count))
    progress("reading the topics back and checking…")
    outcome = tally(
        records,
        _positions(settings, topics["readings"]),
        _deadletters(settings, topics["deadletter"]),
        pipeline.processed,
    )
    problems = outcome["dead_letter_problems"]
    ok = (
        pipeline.alive
        and not pipeline.stalled
        and outcome["hostile_missing"] == 0
        and outcome["hostile_processed"] == 0
        and outcome["valid_missing"] == 0
        and outcome["valid_dead_lettered"] == 0
        and not any(problems.values())  # type: ignore[attr-defined]
    )
    return {
        "ok": ok,
        "records": count,
        "hostile": sum(r.hostile for r in records),
        "valid": sum(not r.hostile for r in records),
        "megabytes": round(volume / 1e6, 1),
        "seed": seed,
        "client": settings.backend,
        "topics": topics,
        "records_per_s": round(count / pipeline.seconds) if pipeline.seconds else None,
        "produce_s": round(produce_s, 1),
        "pipeline_s": round(pipeline.seconds, 1),
        "pipeline": {
            "alive": pipeline.alive,
            "stalled": pipeline.stalled,
            "status": pipeline.status,
            "errors": pipeline.errors,
            "last_error": pipeline.last_error,
            "findings": pipeline.findings,
            "alerts": pipeline.alerts,
        },
        **outcome,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_s": round(time.perf_counter() - began, 1),
    }


def format_report(figures: dict) -> str:
    """The campaign's figures as text: a row per family, then the totals and the verdict."""
    head = f"{'family':<20}{'records':>9}{'dead-lettered':>15}{'dupl.':>7}{'missing':>9}"
    head += f"{'processed':>11}  top reason"
    lines = [head, "-" * len(head)]
    for name, f in figures["families"].items():
        reason = f["top_reasons"][0][0] if f["top_reasons"] else "–"
        lines.append(
            f"{name:<20}{f['records']:>9,}{f['dead_lettered']:>15,}{f['duplicates']:>7,}"
            f"{f['missing']:>9,}{f['processed']:>11,}  {reason[:70]}"
        )
    p = figures["pipeline"]
    problems = ", ".join(f"{k} {v:,}" for k, v in figures["dead_letter_problems"].items())
    rate = figures["records_per_s"]
    lines += [
        "",
        f"{figures['records']:,} records ({figures['hostile']:,} hostile, {figures['valid']:,} "
        f"valid; {figures['megabytes']:,} MB), seed {figures['seed']}, client {figures['client']}",
        f"pipeline: {'–' if rate is None else f'{rate:,}'} records/s over "
        f"{figures['pipeline_s']:,} s; {'alive' if p['alive'] else 'STOPPED'}"
        f"{' (stalled)' if p['stalled'] else ''}, {p['errors']:,} errors, "
        f"{p['findings']:,} findings, {p['alerts']:,} alerts",
        f"hostile: missing {figures['hostile_missing']:,}, reached detection "
        f"{figures['hostile_processed']:,}; valid: missing {figures['valid_missing']:,}, "
        f"dead-lettered {figures['valid_dead_lettered']:,}; duplicates: "
        f"{figures['duplicates']['dead_letters']:,} dead letters, "
        f"{figures['duplicates']['readings_processed']:,} readings",
        f"dead letters: {problems}",
        f"peak RSS {figures['peak_rss_mb']:,.0f} MB, wall time {figures['wall_s']:,} s "
        f"(producing {figures['produce_s']:,} s)",
        "OK: nothing lost, nothing let through, the pipeline never stopped"
        if figures["ok"]
        else "FAILED: see the counts above",
    ]
    return "\n".join(lines)
