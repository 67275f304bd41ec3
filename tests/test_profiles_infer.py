"""`workbench profiles infer`: a fleet known only by what it sends gets a proposed profile that
`profiles check` accepts and that validates the same readings; the rules it guesses by, one by
one; and profiles written back to TOML read the same."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.test_profiles import _validate
from workbench.cli import main
from workbench.config import Settings
from workbench.profiles.guess import counter_evidence, interval, is_binary, widen
from workbench.profiles.infer import InferenceError, infer_profiles
from workbench.profiles.load import load_profiles, parse_profiles
from workbench.profiles.write import to_toml
from workbench.streams.clients import make_producer

PLANT = Path(__file__).parent / "data" / "profiles" / "plant.toml"
NOW_MS = int(datetime.now(UTC).timestamp() * 1000)
PUMP_RANGES = {
    "inlet_pressure": (0.8, 2.0),
    "outlet_pressure": (5.0, 6.9),
    "flow": (95.0, 150.0),
    "vibration": (1.5, 3.5),
    "bearing_temperature": (55.0, 72.0),
    "motor_current": (40.0, 55.0),
    "motor_voltage": (395.0, 405.0),
}


def plant_readings(per_device: int = 30, seed: int = 1) -> list[dict[str, Any]]:
    """The plant fleet as its gateway sends it: 4 pumps every 10 s (a site name, and a radio
    level in one reading of three), 3 water meters every 60 s whose register only rises (and
    stands still when no water flows), 3 door switches every 30 s saying true/false or 0/1."""
    rng = random.Random(seed)
    readings = []
    for k in range(per_device):
        for d in range(4):
            pump = {"model": "pump", "serial": f"P-{d + 1:02d}", "t_ms": NOW_MS, "n": 500 + k}
            pump["t_ms"] -= (per_device - k) * 10_000 + rng.randint(-300, 300)
            pump.update({m: round(rng.uniform(lo, hi), 2) for m, (lo, hi) in PUMP_RANGES.items()})
            pump.update(speed=rng.randint(2900, 2990), site="north" if d < 2 else "south")
            if k % 3 == 0:
                pump["gateway_rssi"] = -rng.randint(50, 90)
            readings.append(pump)
    for d in range(3):
        volume = 1000.0 * (d + 1)
        for k in range(per_device):
            volume += rng.choice((0.0, 0.0, rng.uniform(0.1, 2.0)))
            t_ms = NOW_MS - (per_device - k) * 60_000
            readings.append(
                {"model": "meter", "serial": f"M-{d + 1}", "t_ms": t_ms, "n": k, "volume": volume}
            )
    for d in range(3):
        for k in range(per_device):
            is_open = k % 4 == 1 or rng.random() < 0.2
            t_ms = NOW_MS - (per_device - k) * 30_000
            door = {"model": "door", "serial": f"D-{d + 1}", "t_ms": t_ms, "n": k}
            readings.append({**door, "open": int(is_open) if d == 2 else is_open})
    return readings


def _encoded(readings: list[dict[str, Any]]) -> list[bytes]:
    return [json.dumps(r).encode() for r in readings]


def _publish(kafka: Settings, topic: str, values: list[bytes]) -> None:
    """Produce the readings keyed by device, as a gateway does."""
    producer = make_producer(kafka)
    for value in values:
        producer.send(topic, value, key=json.loads(value)["serial"].encode())
    producer.flush()
    producer.close()
    assert producer.deliveries().delivered == len(values)


def _cluster(kafka: Settings) -> list[str]:
    return ["--bootstrap-servers", kafka.bootstrap]


@pytest.mark.kafka
def test_infer_on_the_plant_fleets_topic_proposes_its_profile(
    kafka: Settings, topics: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    values = _encoded(plant_readings())
    assert _validate(PLANT, values).rejected == []  # they are the plant fleet's readings
    _publish(kafka, topics["readings"], values)

    out = tmp_path / "proposed.toml"
    topic = topics["readings"]
    assert main(["profiles", "infer", "--topic", topic, "--out", str(out), *_cluster(kafka)]) == 0
    err = capsys.readouterr().err
    assert f"sampled {len(values)} readings from {topic} in " in err
    assert f"wrote {out}: door (1 metric(s)), meter (1 metric(s)), pump (8 metric(s))" in err
    assert main(["profiles", "check", str(out)]) == 0

    validated = _validate(out.read_text(encoding="utf-8"), values)
    assert validated.rejected == [] and len(validated.readings) == len(values)
    proposed = load_profiles(out)
    plant = load_profiles(PLANT)
    assert proposed.mapping.device_id == plant.mapping.device_id == "serial"
    assert (proposed.mapping.time, proposed.mapping.time_format) == ("t_ms", "epoch_ms")
    assert proposed.mapping.type_field == "model" and proposed.mapping.fields == {"seq": "n"}
    assert sorted(proposed.type_names) == sorted(plant.type_names)
    for device_type in plant.types:
        mine = proposed.type(device_type.name)
        assert {(m.name, m.kind) for m in mine.metrics} == {
            (m.name, m.kind) for m in device_type.metrics
        }
        assert (mine.interval_s, mine.extra) == (device_type.interval_s, device_type.extra)


@pytest.mark.kafka
def test_infer_prints_to_stdout_and_never_overwrites_a_file(
    kafka: Settings, topics: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _publish(kafka, topics["readings"], _encoded(plant_readings(per_device=3)))
    args = ["profiles", "infer", "--topic", topics["readings"], "--samples", "20", *_cluster(kafka)]
    assert main(args) == 0
    printed = capsys.readouterr()
    assert "sampled 20 readings" in printed.err
    assert parse_profiles(printed.out).mapping.device_id == "serial"
    kept = tmp_path / "mine.toml"
    kept.write_text("# my edits\n")
    assert main([*args, "--out", str(kept)]) == 2
    assert "exists (it may hold your edits)" in capsys.readouterr().err
    assert kept.read_text() == "# my edits\n"
    assert main(["profiles", "infer", "--topic", "t.no.such.topic", *_cluster(kafka)]) == 2
    assert "there is no topic 't.no.such.topic'" in capsys.readouterr().err


def test_the_proposal_marks_its_guesses_and_is_the_same_for_the_same_readings() -> None:
    readings = plant_readings()
    text = infer_profiles(readings, "plant").toml()
    assert text == infer_profiles(list(reversed(readings)), "plant").toml()
    lines = text.splitlines()
    flow = lines.index('metrics.flow = { unit = "?", min = 0, max = 300 }')
    assert lines[flow - 2].startswith("# guessed from 120 readings of 4 devices: observed 95")
    assert lines[flow - 2].endswith(", widened") and lines[flow - 1] == "# fill in the unit"
    voltage = next(line for line in lines if line.startswith("metrics.motor_voltage"))
    assert 'unit = "V"' in voltage  # guessed from the name, and said so
    assert 'metrics.bearing_temperature = { unit = "°C", min = -50, max = 150 }' in lines
    assert "# guess: the unit, from the name" in lines[lines.index(voltage) - 1]
    assert '# ignored: "site": text, e.g. "north" (2 distinct)' in lines
    assert (
        '# ignored: "gateway_rssi": in only 40 of 120 readings: a metric is in every one' in lines
    )
    assert all(len(line) <= 100 for line in lines)


def test_counters_rise_and_never_fall_per_device() -> None:
    rising = [[1.0, 1.0, 2.5, 2.5, 3.0], [7.0, 9.0, 9.0, 9.5, 12.0]]
    assert counter_evidence(rising) == (8, 5)  # 8 steps, 5 of them up
    assert counter_evidence([*rising, [5.0, 4.9]]) is None  # one fell
    assert counter_evidence([[2.0] * 5, [3.0] * 5]) is None  # none rose
    assert counter_evidence([[1.0, 2.0, 3.0]]) is None  # too few readings to tell

    def kind(series: dict[str, list[float]]) -> str:
        readings = [
            {"id": device, "ts": 1_700_000_000 + 60 * k, "level": value}
            for device, values in series.items()
            for k, value in enumerate(values)
        ]
        return infer_profiles(readings, "tanks").profiles.types[0].metric("level").kind

    rising = {"a": [1.0, 1.0, 1.2, 1.5, 1.5], "b": [10.0, 10.5, 11.0, 11.0, 12.0]}
    assert kind(rising) == "counter"
    assert kind({**rising, "c": [5.0, 6.0, 5.5, 7.0, 8.0]}) == "gauge"  # one device fell once
    assert kind({"a": [3.0, 3.0, 3.0, 3.0, 3.0], "b": [1.0] * 5}) == "gauge"  # never rose
    assert kind({"a": [1.0, 2.0, 3.0]}) == "gauge"  # two steps tell nothing


def test_binary_metrics_are_true_false_or_0_and_1() -> None:
    assert is_binary([True, False, True]) and is_binary([0, 1, 1]) and is_binary([True, 0, 1])
    assert not is_binary([0, 0, 0])  # a whole-number level that happened to stay at 0
    assert not is_binary([0, 1, 2]) and not is_binary([0.0, 1.0])


def test_ranges_are_widened_to_round_numbers_and_never_cross_zero_for_one_signed_data() -> None:
    assert widen(0.8, 6.9) == (0.0, 15.0)  # out by 6.9 (the largest magnitude), then to 5s
    assert widen(2900, 2990) == (0.0, 6000.0)  # a stopped pump reads 0: non-negative → 0
    assert widen(-5.0, 30.0) == (-50.0, 100.0)  # out by the spread, 35, on both sides
    assert widen(-90.0, -40.0) == (-200.0, 0.0)  # a negative quantity stays at most 0
    assert widen(18.0, 23.5, zero_is_a_floor=False) == (-10.0, 50.0)  # °C: zero is no floor
    assert widen(0.0, 0.0) == (0.0, 1.0)
    assert widen(0.001, 0.004) == (0.0, 0.008)


def test_the_interval_is_the_median_gap_in_two_significant_digits() -> None:
    assert interval([9.7, 9.98, 10.2, 10.4, 300.0]) == 10.0  # one long silence does not count
    assert interval([61.3]) == 61.0 and interval([0.2503, 0.2497]) == 0.25


def _one_logger(**fields: Any) -> list[dict[str, Any]]:
    return [{"id": f"L{d}", **fields, "temperature": 4.0 + d} for d in range(3)]


@pytest.mark.parametrize(
    ("stamp", "time_format", "seconds"),
    [
        (1_700_000_000, "epoch_s", 1_700_000_000),
        (1_700_000_000.25, "epoch_s", 1_700_000_000.25),
        (1_700_000_000_000, "epoch_ms", 1_700_000_000),
        (1_700_000_000_250, "epoch_ms", 1_700_000_000.25),
        ("2023-11-14T22:13:20Z", "iso8601", 1_700_000_000),
        ("2023-11-14 23:13:20+01:00", "iso8601", 1_700_000_000),
        ("2023-11-14 22:13:20", "%Y-%m-%d %H:%M:%S", 1_700_000_000),
        ("2023-11-14T22:13:20.250", "%Y-%m-%dT%H:%M:%S.%f", 1_700_000_000.25),
        ("14.11.2023 22:13:20", "%d.%m.%Y %H:%M:%S", 1_700_000_000),
    ],
)
def test_the_time_format_is_read_from_the_values(
    stamp: object, time_format: str, seconds: float
) -> None:
    readings = _one_logger(ts=stamp)
    proposal = infer_profiles(readings, "loggers")
    assert (proposal.profiles.mapping.time, proposal.profiles.mapping.time_format) == (
        "ts",
        time_format,
    )
    validated = _validate(proposal.toml(), _encoded(readings))
    assert validated.rejected == []
    assert validated.readings[0].ts == datetime.fromtimestamp(seconds, UTC)


def test_a_naive_time_says_its_zone_and_day_month_order_are_guesses() -> None:
    proposal = infer_profiles(_one_logger(time="09/03/2024 10:14:00"), "loggers")
    assert proposal.profiles.mapping.time_format == "%d/%m/%Y %H:%M:%S"
    assert proposal.profiles.mapping.time_zone == "UTC"
    assert proposal.notes["mapping.time_zone"][0].startswith("guess: the times carry no zone")
    assert (
        "guess: these times also read as %m/%d/%Y %H:%M:%S" in proposal.notes["mapping.time_format"]
    )
    assert 'time_zone = "UTC"' in proposal.toml()


def test_a_topic_without_a_type_field_is_one_type_named_after_it() -> None:
    readings = [
        {"sensor": f"s{d}", "time": 1_700_000_000 + k, "status": "ok" if k else "fault", "rh": 40}
        for d in range(3)
        for k in range(3)
    ]
    proposal = infer_profiles(readings, "Cold-Room.loggers")
    mapping = proposal.profiles.mapping
    assert (mapping.fixed_type, mapping.type_field) == ("cold_room_loggers", None)
    assert mapping.device_id == "sensor"  # "status" changes within a device: not the type
    assert proposal.profiles.type("cold_room_loggers").extra == "ignore"
    reparsed = parse_profiles(proposal.toml())
    assert reparsed.mapping == mapping and reparsed.types == proposal.profiles.types


def test_the_id_type_sequence_location_and_firmware_fields_are_found_by_their_values() -> None:
    readings = [
        {
            "kind": "tracker",
            "imei": f"35{d:013d}",
            "gateway": "gw-1",
            "timestamp": f"2024-05-01T12:{k:02d}:00Z",
            "frame": 40 + k,
            "latitude": 52.1 + d / 100,
            "lng": 4.3,
            "fw": "2.1.0",
            "speed_kmh": 30.0 + k,
        }
        for d in range(5)
        for k in range(4)
    ]
    mapping = infer_profiles(readings, "trackers").profiles.mapping
    assert (mapping.device_id, mapping.time, mapping.type_field) == ("imei", "timestamp", "kind")
    assert mapping.fields == {"seq": "frame", "lat": "latitude", "lon": "lng", "firmware": "fw"}


def test_readings_keyed_otherwise_and_records_that_are_not_readings_are_said() -> None:
    readings = _one_logger(ts=1_700_000_000)
    proposal = infer_profiles([*readings, None, [1, 2]], "loggers", [b"L0", b"x", b"L2", None, b""])
    assert "1 of 3 records have another key" in proposal.notes["mapping.device_id"][-1]
    assert "2 of 5 records were not JSON objects: skipped." in proposal.notes[""]
    with pytest.raises(InferenceError, match="no JSON object among the 1 records"):
        infer_profiles([None], "loggers")
    with pytest.raises(InferenceError, match="no field holds a time"):
        infer_profiles([{"id": "a", "temperature": 3.0}], "loggers")
    with pytest.raises(InferenceError, match="looks like a device id"):
        infer_profiles([{"ts": 1_700_000_000, "temperature": 3.0}], "loggers")


@pytest.mark.parametrize("path", [None, PLANT])
def test_profiles_written_back_to_toml_read_the_same(path: Path | None) -> None:
    profiles = load_profiles(path)
    text = to_toml(profiles, {"": ["first line\nsecond\x7f"], "types.meter": ["a note"]})
    again = parse_profiles(text)
    assert again.types == profiles.types and again.mapping == profiles.mapping
    assert text.startswith("# first line\\u000asecond\\u007f\n")
