"""Recordings read into readings: times read and written as a profile says, rows converted (declared
metrics only), files merged in time order, and the replay's schedule (pure functions)."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import msgspec
import pytest

from workbench.profiles.compile import compile_profiles
from workbench.profiles.load import load_profiles, parse_profiles
from workbench.profiles.model import Mapping
from workbench.recordings.convert import RecordingFormat, RowConverter, RowProblem
from workbench.recordings.files import Row, device_id_for, devices_by_file, read_rows
from workbench.recordings.pacing import Pacing
from workbench.recordings.timeline import Skipped, recording_readings
from workbench.recordings.times import parse_time, wire_time
from workbench.schema import DEVICE_ID_PATTERN

DATA = Path(__file__).parent / "data"
BOILERS = load_profiles(DATA / "recordings" / "boilers.toml")
PLANT = load_profiles(DATA / "profiles" / "plant.toml")
T0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)


# --- the replay's schedule ---------------------------------------------------------------------


def test_rows_go_out_at_the_recordings_gaps_divided_by_the_speed() -> None:
    at_pace = Pacing.of(T0, 1.0, shift_to_now=False, now=T0)
    ten_times = Pacing.of(T0, 10.0, shift_to_now=False, now=T0)
    flat_out = Pacing.of(T0, math.inf, shift_to_now=False, now=T0)
    later = T0 + timedelta(minutes=5)
    assert at_pace.due_s(T0) == 0.0 and at_pace.due_s(later) == 300.0
    assert ten_times.due_s(later) == 30.0
    assert flat_out.due_s(later) == 0.0
    assert at_pace.due_s(T0 - timedelta(seconds=5)) == 0.0  # out of order: at once
    assert at_pace.published(later) == later  # not shifted: the recording's own times
    with pytest.raises(ValueError, match="above 0"):
        Pacing.of(T0, 0.0, shift_to_now=False, now=T0)


def test_shifted_to_now_the_first_row_is_now_and_gaps_are_kept() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    pacing = Pacing.of(T0, 2.0, shift_to_now=True, now=now)
    assert pacing.published(T0) == now
    assert pacing.published(T0 + timedelta(seconds=10)) == now + timedelta(seconds=10)
    assert pacing.due_s(T0 + timedelta(seconds=10)) == 5.0


def test_the_replay_knows_when_shifted_times_run_too_far_ahead_of_the_clock() -> None:
    hour = timedelta(hours=1)
    now = T0 + timedelta(days=1)
    assert Pacing.of(T0, 1.0, True, now).too_far_ahead_from_s(hour) is None  # real time
    assert Pacing.of(T0, 10.0, False, now).too_far_ahead_from_s(hour) is None  # not shifted
    # At 2×, a row recorded 7,200 s in goes out 3,600 s in, timed 3,600 s ahead of the clock.
    assert Pacing.of(T0, 2.0, True, now).too_far_ahead_from_s(hour) == 7200.0
    assert Pacing.of(T0, math.inf, True, now).too_far_ahead_from_s(hour) == 3600.0


# --- times ---------------------------------------------------------------------------------------

PARIS = Mapping(time_zone="Europe/Paris")


@pytest.mark.parametrize(
    ("value", "mapping", "expected"),
    [
        ("2024-03-04T08:00:00Z", Mapping(), T0),
        ("2024-03-04T09:00:00+01:00", Mapping(), T0),
        ("2024-03-04 09:00:00", PARIS, T0),  # naive: the profile's zone
        ("2024-03-04 08:00:00", Mapping(), T0),  # naive, no zone declared: UTC
        (T0.timestamp(), Mapping(), T0),  # epoch seconds
        (str(int(T0.timestamp() * 1000)), Mapping(), T0),  # epoch milliseconds, by magnitude
        (T0.timestamp(), Mapping(time_format="epoch_ms"), T0),  # seconds, to a ms fleet
        ("04/03/2024 09h00", Mapping(time_format="%d/%m/%Y %Hh%M", time_zone="Europe/Paris"), T0),
    ],
)
def test_recording_times_are_read_by_the_profiles_rule_or_recognised(value, mapping, expected):
    assert parse_time(value, mapping) == expected


@pytest.mark.parametrize("value", ["", None, "yesterday", "nan", "2024-13-45T00:00:00"])
def test_an_unreadable_time_says_what_was_expected(value) -> None:
    with pytest.raises(ValueError, match=r"no time|not ISO 8601 nor epoch|not finite"):
        parse_time(value, Mapping())


WIRE_PROFILE = """
[mapping]
device_id = "id"
time = "t"
time_format = "{fmt}"
time_zone = "America/New_York"
fixed_type = "logger"
[types.logger]
interval_s = 60
metrics.temperature = {{ unit = "°C", min = -40, max = 60 }}
"""


@pytest.mark.parametrize(
    ("fmt", "wire"),
    [
        ("iso8601", "2024-03-04T08:00:00.250000+00:00"),
        ("epoch_s", T0.timestamp() + 0.25),
        ("epoch_ms", int(T0.timestamp() * 1000) + 250),
        ("%Y-%m-%d %H:%M:%S.%f", "2024-03-04 03:00:00.250000"),  # New York local time
    ],
)
def test_times_are_written_as_the_profile_declares_and_decode_back(fmt: str, wire) -> None:
    profiles = parse_profiles(WIRE_PROFILE.format(fmt=fmt))
    moment = T0 + timedelta(milliseconds=250)
    assert wire_time(moment, profiles.mapping) == wire
    message = json.dumps({"id": "L1", "t": wire, "temperature": 4.0}).encode()
    assert compile_profiles(profiles).decode(message).ts == moment


# --- rows ----------------------------------------------------------------------------------------


def _row(line: int = 2, **fields: object) -> Row:
    return Row(Path("pumps.csv"), line, dict(fields))


def test_a_row_becomes_a_reading_of_the_profiles_wire_names_with_declared_metrics_only() -> None:
    form = RecordingFormat(PLANT, "meter", time_column="when", device_column="serial")
    converter = RowConverter(form)
    row = _row(when="2024-03-04T08:00:00Z", serial="M-9", volume="12.5", n="7", label="1", x="?")
    reading = converter.convert(row, device_id=None)
    assert (reading.device_id, reading.ts, reading.values) == (
        "M-9",
        T0,
        {"seq": 7, "volume": 12.5},
    )
    wire = msgspec.json.decode(converter.wire(reading, shift=timedelta(seconds=1)))
    assert wire == {
        "serial": "M-9",
        "t_ms": int(T0.timestamp() * 1000) + 1000,
        "model": "meter",
        "n": 7,
        "volume": 12.5,
    }  # no label, no x: undeclared columns never reach the wire
    decoded = compile_profiles(PLANT).decode(converter.wire(reading))
    assert (decoded.device_type, decoded.device_id, decoded.seq, decoded.volume) == (
        "meter",
        "M-9",
        7,
        12.5,
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"volume": "12,5"}, "volume '12,5' is not a number"),
        ({"volume": ""}, "no value for metric volume"),
        ({"volume": "inf"}, "volume 'inf' is not a finite number"),
        ({"when": ""}, "no time"),
        ({"n": "7.5"}, "seq '7.5' is not a whole number"),
    ],
)
def test_a_row_that_does_not_fit_says_where_and_why(fields: dict, reason: str) -> None:
    converter = RowConverter(RecordingFormat(PLANT, "meter", time_column="when"))
    row = _row(line=12, **{"when": "2024-03-04T08:00:00Z", "volume": "1", **fields})
    with pytest.raises(RowProblem, match=re.escape(f"pumps.csv:12: {reason}")):
        converter.convert(row, device_id="M-9")


def test_the_type_must_be_one_the_profiles_declare() -> None:
    with pytest.raises(ValueError, match="no device type 'boiler'"):
        RecordingFormat(PLANT, "boiler", time_column="t")


def test_a_file_is_a_device_named_after_it_and_two_files_cannot_be_one(tmp_path: Path) -> None:
    device = device_id_for(Path("cold rooms/Kühlraum 3 (Nord).csv"))
    assert re.fullmatch(DEVICE_ID_PATTERN, device) and device.startswith("K") and "3" in device
    with pytest.raises(ValueError, match="would both be device 'a'"):
        devices_by_file([tmp_path / "x" / "a.csv", tmp_path / "y" / "a.jsonl"])


def test_json_lines_rows_and_csv_rows_with_their_line_numbers(tmp_path: Path) -> None:
    lines = tmp_path / "r.jsonl"
    lines.write_text('{"a": 1}\n\nnot json\n[1]\n')
    rows = list(read_rows(lines))
    assert [(r.line, r.fields) for r in rows] == [(1, {"a": 1}), (3, None), (4, None)]
    assert rows[1].problem.startswith("not JSON") and "list" in rows[2].problem
    table = tmp_path / "r.csv"
    table.write_text('a;b\n1;"two\nlines"\n3;4\n', encoding="utf-8-sig")
    assert [(r.line, r.fields) for r in read_rows(table, delimiter=";")] == [
        (2, {"a": "1", "b": "two\nlines"}),
        (4, {"a": "3", "b": "4"}),
    ]


def test_files_merge_in_time_order_and_rows_that_do_not_fit_are_counted(tmp_path: Path) -> None:
    header = "timestamp,temperature,power,energy\n"
    (tmp_path / "b1.csv").write_text(
        header + "2024-03-04T08:00:00Z,60,1,1\n2024-03-04T08:00:20Z,60,1,1\n"
        "2024-03-04T08:00:30Z,hot,1,1\n"
    )
    (tmp_path / "b2.csv").write_text(
        header + "2024-03-04T08:00:00Z,61,1,1\n,61,1,1\n2024-03-04T08:00:10Z,61,1,1\n"
    )
    files = sorted(tmp_path.glob("*.csv"))
    skipped = Skipped()
    form = RecordingFormat(BOILERS, "boiler", time_column="timestamp")
    merged = [(r.device_id, r.ts - T0) for r in recording_readings(files, form, skipped)]
    s = timedelta(seconds=1)
    assert merged == [("b1", 0 * s), ("b2", 0 * s), ("b2", 10 * s), ("b1", 20 * s)]
    assert skipped.count == 2
    assert skipped.lines()[0] == "2 rows skipped, not readings:"
    assert sorted(skipped.lines()[1:]) == [  # in the order the merge reached them
        "  b1.csv:4: temperature 'hot' is not a number",
        "  b2.csv:3: no time",
    ]


def test_a_column_the_csv_header_lacks_is_a_wrong_option_not_rows_to_skip(tmp_path: Path) -> None:
    (tmp_path / "b1.csv").write_text(
        "timestamp,temperature,power,energy\n2024-03-04T08:00:00Z,1,1,1\n"
    )
    for form, says in [
        (RecordingFormat(BOILERS, "boiler", time_column="ts"), "--time-column ts"),
        (
            RecordingFormat(BOILERS, "boiler", time_column="timestamp", device_column="unit"),
            "--device-column unit",
        ),
    ]:
        with pytest.raises(ValueError, match=f"^{says}: b1.csv has no such column") as refused:
            list(recording_readings([tmp_path / "b1.csv"], form, Skipped()))
        assert "(its columns: timestamp, temperature, power, energy)" in str(refused.value)


def test_only_the_first_reasons_are_kept() -> None:
    skipped = Skipped()
    for n in range(8):
        skipped.add(f"r{n}")
    assert (
        skipped.count == 8 and skipped.lines()[0] == "8 rows skipped, not readings (the first 5):"
    )
    assert skipped.lines()[1:] == [f"  r{n}" for n in range(5)]


def test_times_without_a_zone_follow_the_profile() -> None:
    paris = parse_time("2024-07-01 10:00:00", PARIS)
    assert paris == datetime(2024, 7, 1, 10, tzinfo=ZoneInfo("Europe/Paris"))  # summer: UTC+2
    assert paris.hour == 8 and paris.tzinfo == UTC
