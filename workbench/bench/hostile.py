"""Hostile and malformed reading records, seeded, for ``workbench bench fuzz``.

Sixteen families (random bytes, bad UTF-8, truncated or deeply nested JSON, huge numbers, control
characters, markup, spreadsheet formulas, wrong types, missing fields, unknown device types,
oversize payloads, far-off times, empty values, keys other than the device id, fields given twice)
mixed with valid simulator readings, some of them written in odd but legal ways. Each record
carries its family and case number, so a campaign can count what happened to each.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import msgspec

from workbench.schema import DEVICE_TYPES, MAX_SEQ
from workbench.simulator import simulate
from workbench.simulator.fleet import BOUNDS
from workbench.streams.validate import DEFAULT_MAX_BYTES

FAMILY_HEADER = "workbench.fuzz.family"
CASE_HEADER = "workbench.fuzz.case"
VALID = "valid"
VALID_EDGE = "valid_edge"
"""Valid readings written in odd but legal ways (bounds, -0, escapes, order, times far apart)."""
EDGE_SHARE = 0.2
"""Share of the valid readings that are written the odd way."""
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
