"""Decoding and validation of raw records: valid ones pass in order, each bad one is explained."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from workbench import schema
from workbench.streams.clients import RecordBatch
from workbench.streams.validate import ReadingValidator

NOW = datetime.now(UTC)


def thermostat(**changes: object) -> dict:
    base = {
        "device_type": "thermostat",
        "device_id": "thermostat-0001",
        "ts": NOW.isoformat(),
        "seq": 7,
        "lat": 51.5,
        "lon": -0.12,
        "firmware": "2.4.1",
        "temperature": 21.5,
        "humidity": 40.0,
        "power": 800.0,
        "energy": 1234.5,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def key_of(value: bytes | None) -> bytes | None:
    """The key a producer gives a record: the device id in it (None when it has none)."""
    try:
        return str(json.loads(value)["device_id"]).encode()
    except Exception:
        return None


def batch_of(values: list[bytes | None], keys: list[bytes | None] | None = None) -> RecordBatch:
    return RecordBatch(
        topic="iot.readings",
        values=values,
        keys=[key_of(v) for v in values] if keys is None else keys,
        timestamps_ms=[1000 + i for i in range(len(values))],
        next_offsets={0: len(values)},
        runs=[(0, 0)],
        locate=lambda i: (0, 100 + i),
    )


def encode(d: dict) -> bytes:
    return msgspec.json.encode(d)


BAD = {
    "invalid JSON": (b'{"device_type": "thermostat", ', "malformed JSON"),
    "invalid UTF-8": (encode(thermostat()).replace(b"2.4.1", b"\xff\xfe"), "invalid UTF-8"),
    "NaN": (encode(thermostat()).replace(b"21.5", b"NaN"), "malformed JSON"),
    "infinity": (encode(thermostat()).replace(b"21.5", b"1e999"), "schema: Number out of range"),
    "missing field": (encode(thermostat(humidity=None)), "missing required field `humidity`"),
    "mistyped field": (encode(thermostat(power="lots")), "Expected `float`, got `str`"),
    "impossible value": (encode(thermostat(humidity=140.0)), "`$.humidity`"),
    "below absolute zero": (encode(thermostat(temperature=-300.0)), "`$.temperature`"),
    "unknown device type": (encode(thermostat(device_type="toaster")), "Invalid value 'toaster'"),
    "field the type lacks": (encode(thermostat(battery=0.5)), "unknown field `battery`"),
    "naive timestamp": (encode(thermostat(ts="2026-01-01T00:00:00")), "`$.ts`"),
    "timestamp in 1970": (
        encode(thermostat(ts="1970-01-01T00:00:00Z")),
        "implausible timestamp: 1970-01-01",
    ),
    "timestamp next year": (
        encode(thermostat(ts=(NOW + timedelta(days=365)).isoformat())),
        "implausible timestamp",
    ),
    "oversize": (encode(thermostat(firmware="x" * 20)) + b" " * 20_000, "oversize: 20,"),
    "tombstone": (None, "empty"),
    "markup in device id": (
        encode(thermostat(device_id="<script>alert(1)</script>")),
        "has characters outside",
    ),
    "not an object": (b"[1, 2, 3]", "schema: Expected `object`, got `array`"),
    # Found by `workbench bench fuzz`: each of these passed validation.
    "309-digit seq (overflowed the detectors)": (
        encode(thermostat()).replace(b'"seq":7', b'"seq":' + b"9" * 309),
        "schema: Expected `int` <= 9007199254740991 - at `$.seq`",
    ),
    "seq past 2**53": (encode(thermostat(seq=2**53)), "Expected `int` <= 9007199254740991"),
    "markup in firmware": (encode(thermostat(firmware="<script>")), "firmware '<script>' is not"),
    "NUL in firmware": (encode(thermostat(firmware="4.2\x00")), "firmware '4.2\\x00' is not"),
    "formula in firmware": (encode(thermostat(firmware="=1+1")), "firmware '=1+1' is not"),
    "leading minus in firmware": (encode(thermostat(firmware="-1+1")), "is not a version"),
    "field given twice, another value": (
        encode(thermostat())[:-1] + b',"device_id":"thermostat-0002"}',
        "duplicate field: `device_id` appears more than once",
    ),
    "field given twice, same value": (
        b'{"seq":7,' + encode(thermostat())[1:],
        "duplicate field: `seq` appears more than once",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_kind_of_bad_record_is_rejected_with_its_reason(case: str) -> None:
    value, reason = BAD[case]
    out = ReadingValidator()(batch_of([value]))
    assert out.readings == []
    assert len(out.rejected) == 1
    rejected = out.rejected[0]
    assert reason in rejected.reason
    assert (rejected.partition, rejected.offset, rejected.key) == (0, 100, key_of(value))
    assert rejected.value == value  # the original bytes, untouched


def test_valid_readings_pass_in_order_between_bad_ones() -> None:
    good = [encode(thermostat(seq=i)) for i in range(5)]
    values = [good[0], BAD["NaN"][0], good[1], good[2], BAD["oversize"][0], good[3], good[4]]
    out = ReadingValidator()(batch_of(values))
    assert [r.seq for r in out.readings] == [0, 1, 2, 3, 4]
    assert out.timestamps_ms == [1000, 1002, 1003, 1005, 1006]
    assert [r.offset for r in out.rejected] == [101, 104]


def test_each_device_type_decodes_with_only_its_own_metrics() -> None:
    common = {k: v for k, v in thermostat().items() if k in schema.COMMON_FIELDS}
    sample = {
        "temperature": 5.0,
        "humidity": 50.0,
        "power": 100.0,
        "energy": 10.0,
        "battery": 0.8,
        "co2": 600.0,
        "pm25": 8.0,
    }
    for device_type, metrics in schema.METRICS.items():
        value = encode({**common, "device_type": device_type, **{m: sample[m] for m in metrics}})
        out = ReadingValidator()(batch_of([value]))
        assert not out.rejected, out.rejected
        reading = out.readings[0]
        assert reading.device_type == device_type
        assert all(getattr(reading, m) == sample[m] for m in metrics)
        absent = set(sample) - set(metrics)
        assert not any(hasattr(reading, m) for m in absent)


def test_round_trip_through_the_wire_form() -> None:
    reading = msgspec.json.decode(encode(thermostat()), type=schema.Reading)
    again = ReadingValidator()(batch_of([schema.encode(reading)])).readings[0]
    assert again == reading


def test_validator_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 64 bytes"):
        ReadingValidator(max_bytes=10)
    with pytest.raises(ValueError, match="timezone-aware"):
        ReadingValidator(earliest=datetime(2000, 1, 1))


def test_a_bad_device_id_is_refused_even_after_good_ones_were_seen() -> None:
    validator = ReadingValidator()
    good = encode(thermostat(device_id="dev-1"))
    bad = encode(thermostat(device_id="dev 1"))
    out = validator(batch_of([good, bad, good, bad]))
    assert [r.device_id for r in out.readings] == ["dev-1", "dev-1"]
    assert [r.offset for r in out.rejected] == [101, 103]


def test_each_partitions_latest_valid_reading_time_is_reported() -> None:
    values = [
        encode(thermostat(ts=(NOW - timedelta(seconds=30)).isoformat())),
        encode(thermostat(ts=(NOW - timedelta(seconds=20)).isoformat())),
        b"broken",  # the last record of partition 3 is refused: the one before counts
        encode(thermostat(ts=(NOW - timedelta(seconds=50)).isoformat())),
        encode(thermostat(ts=(NOW - timedelta(seconds=40)).isoformat())),
    ]
    batch = batch_of(values)
    batch.runs = [(3, 0), (5, 3)]
    out = ReadingValidator()(batch)
    assert out.partition_latest == {
        3: NOW - timedelta(seconds=20),
        5: NOW - timedelta(seconds=40),
    }


@pytest.mark.parametrize("device_id", ["secxss-nl\n", "a\x00", "a b", "dev-1\r", "\ndev-1"])
def test_a_device_id_with_a_control_character_or_space_anywhere_is_refused(device_id: str) -> None:
    out = ReadingValidator()(batch_of([encode(thermostat(device_id=device_id))]))
    assert out.readings == []
    assert f"device_id {device_id!r} has characters outside" in out.rejected[0].reason


@pytest.mark.parametrize("device_id", ["a", "thermostat-0001", "site.2:meter_7-B", "x" * 64])
def test_a_well_formed_device_id_passes(device_id: str) -> None:
    out = ReadingValidator()(batch_of([encode(thermostat(device_id=device_id))]))
    assert not out.rejected, out.rejected
    assert [r.device_id for r in out.readings] == [device_id]


@pytest.mark.parametrize(
    "key", [None, b"", b"THERMOSTAT-0001", b"thermostat-0001\x00", b"thermostat-0002"]
)
def test_a_reading_keyed_by_anything_but_its_device_id_is_refused(key: bytes | None) -> None:
    value = encode(thermostat())
    validator = ReadingValidator()
    out = validator(batch_of([value, value, value], keys=[b"thermostat-0001", key, key]))
    assert [r.offset for r in out.rejected] == [101, 102]  # the id is known by then: still checked
    assert "wrong key" in out.rejected[0].reason
    assert "but the device id is 'thermostat-0001'" in out.rejected[0].reason
    assert out.rejected[0].key == key
    assert len(out.readings) == 1


@pytest.mark.parametrize("firmware", ["4.2.1", "v2.0.0-rc.1+build.7", "A", "fw_10", "9" * 32])
def test_a_version_like_firmware_passes(firmware: str) -> None:
    out = ReadingValidator()(batch_of([encode(thermostat(firmware=firmware))] * 2))
    assert not out.rejected, out.rejected
    assert [r.firmware for r in out.readings] == [firmware] * 2


def test_the_largest_sequence_number_and_odd_but_legal_json_pass() -> None:
    good = thermostat(seq=schema.MAX_SEQ)
    escaped = "".join(f"\\u{ord(c):04x}" for c in good["device_id"])
    values = [
        encode(good),
        json.dumps(good, indent=2).encode(),  # whitespace everywhere
        encode(dict(reversed(good.items()))),  # the type tag last
        encode(good).replace(b'"thermostat-0001"', f'"{escaped}"'.encode()),
    ]
    out = ReadingValidator()(batch_of(values, keys=[b"thermostat-0001"] * len(values)))
    assert not out.rejected, out.rejected
    assert {(r.device_id, r.seq) for r in out.readings} == {("thermostat-0001", schema.MAX_SEQ)}


def test_a_reason_quoting_the_record_escapes_control_characters_and_is_bounded() -> None:
    hostile = "a\x00\x1b[2J\r\n" * 500
    out = ReadingValidator()(batch_of([encode(thermostat(device_type=hostile))]))
    reason = out.rejected[0].reason
    assert reason.startswith("schema: Invalid value 'a\\x00\\x1b[2J\\r\\na")
    assert reason.isprintable()
    assert len(reason) <= 300 and reason.endswith("…")


def test_no_records_validate_to_nothing() -> None:
    from workbench.explore.recent import decode_readings

    assert decode_readings([]) == ([], [])  # it raised: runs and their ends did not pair up
