"""Device profiles: a fleet declared in TOML is checked (every problem, with its line), compiled,
and its readings validated as the simulator's are: accepted when right, dead-lettered with a
reason naming the field and the rule when not."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.test_validate import batch_of
from workbench import schema
from workbench.profiles.compile import compile_profiles
from workbench.profiles.load import ProfileError, load_profiles, parse_profiles
from workbench.streams.validate import ReadingValidator

PLANT = Path(__file__).parent / "data" / "profiles" / "plant.toml"
T_MS = int(datetime.now(UTC).timestamp() * 1000)


def _pump(**changes: object) -> bytes:
    reading = {
        "model": "pump",
        "serial": "P-17",
        "t_ms": T_MS,
        "n": 4,
        "inlet_pressure": 1.2,
        "outlet_pressure": 6.5,
        "flow": 120.0,
        "vibration": 2.1,
        "bearing_temperature": 61.0,
        "motor_current": 48.0,
        "motor_voltage": 400.0,
        "speed": 2950,
        "gateway_rssi": -61,  # undeclared: the pump type ignores extras
    }
    return json.dumps({k: v for k, v in {**reading, **changes}.items() if v is not None}).encode()


def _validate(profile_text_or_path: str | Path, values: list[bytes], key: bytes | None = None):
    profiles = (
        load_profiles(profile_text_or_path)
        if isinstance(profile_text_or_path, Path)
        else parse_profiles(profile_text_or_path)
    )
    validator = ReadingValidator(profiles=compile_profiles(profiles))
    keys = [
        key or json.loads(v).get("serial", json.loads(v).get("id", "")).encode() for v in values
    ]
    return validator(batch_of(values, keys=keys))


def test_the_shipped_profile_is_the_simulators_fleet() -> None:
    shipped = load_profiles()
    assert shipped.type_names == ("thermostat", "smart_meter", "air_quality", "env_sensor")
    assert shipped.metrics == schema.METRICS
    assert shipped.type("thermostat").metric("energy").kind == "counter"
    assert shipped.units["pm25"] == "µg/m³" and shipped.has_location


def test_a_plant_fleet_is_accepted_with_its_own_field_names_and_epoch_milliseconds() -> None:
    door = json.dumps({"model": "door", "serial": "D-2", "t_ms": T_MS, "open": True}).encode()
    meter = json.dumps({"model": "meter", "serial": "M-9", "t_ms": T_MS, "volume": 1234.5})
    out = _validate(PLANT, [_pump(), door, meter.encode()])
    assert out.rejected == []
    pump, door_reading, meter_reading = out.readings
    assert (pump.device_type, pump.device_id, pump.seq) == ("pump", "P-17", 4)
    assert pump.ts == datetime.fromtimestamp(T_MS / 1000, UTC)
    assert pump.lat is None and pump.firmware is None  # not mapped: None, never an error
    assert len(pump.metric_names) == 8 and pump.speed == 2950
    assert door_reading.open is True and meter_reading.volume == 1234.5


@pytest.mark.parametrize(
    ("reading", "reason"),
    [
        (_pump(vibration=250.0), "vibration"),  # over the declared 100 mm/s
        (_pump(flow=None), "missing required field `flow`"),
        (_pump(t_ms="yesterday"), "`$.t_ms`"),
        (_pump(model="boiler"), "Invalid value 'boiler' - at `$.model`"),
        (json.dumps({"model": "door", "serial": "D-2", "t_ms": T_MS, "open": 1, "x": 2}), "`x`"),
        (json.dumps({"model": "door", "serial": "D-2", "t_ms": T_MS, "open": 2}), "`$.open`"),
    ],
)
def test_a_bad_plant_reading_is_refused_with_the_field_and_rule(reading, reason: str) -> None:
    value = reading if isinstance(reading, bytes) else reading.encode()
    out = _validate(PLANT, [value])
    assert out.readings == [] and len(out.rejected) == 1
    assert reason in out.rejected[0].reason, out.rejected[0].reason


def test_naive_local_times_in_a_declared_zone_and_a_fixed_type() -> None:
    text = """
[mapping]
device_id = "id"
time = "time"
time_format = "%Y-%m-%d %H:%M:%S"
time_zone = "Europe/Paris"
fixed_type = "logger"
[types.logger]
interval_s = 60
metrics.temperature = { unit = "°C", min = -40, max = 60 }
"""
    local = datetime.now(UTC).astimezone().replace(microsecond=0)
    stamp = local.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    value = json.dumps(
        {"id": "L1", "time": stamp.strftime("%Y-%m-%d %H:%M:%S"), "temperature": 4.5}
    ).encode()
    out = _validate(text, [value], key=b"L1")
    assert out.rejected == []
    assert out.readings[0].ts == local.astimezone(UTC)
    assert out.readings[0].device_type == "logger"
    bad = json.dumps({"id": "L1", "time": "09/03/2020 10:14", "temperature": 4.5}).encode()
    refused = _validate(text, [bad], key=b"L1").rejected
    assert "time '09/03/2020 10:14' is not a time written as '%Y-%m-%d %H:%M:%S'" in (
        refused[0].reason
    )


def test_every_problem_of_a_profile_is_reported_with_its_line() -> None:
    text = """[mapping]
time_format = "weird"
lat = "la"

[types.Pump]
interval_s = -1
metrics.ts = { unit = "x", min = 5, max = 1 }
metrics.flow = { min = 0, max = 2 }
metrics.p = { unit = "bar", min = 0, max = 1, kind = "sometimes", colour = 3 }
"""
    with pytest.raises(ProfileError) as error:
        parse_profiles(text, "plant.toml")
    problems = error.value.problems
    expected = [
        "plant.toml:2: mapping.time_format: 'weird' is not a time format",
        "plant.toml:1: mapping: map both lat and lon, or neither",
        "plant.toml:5: types.Pump: type name 'Pump'",
        "plant.toml:6: types.Pump.interval_s: must be above 0 s",
        "plant.toml:7: types.Pump.metrics.ts: metric name 'ts'",
        "plant.toml:7: types.Pump.metrics.ts: min (5) must be below max (1)",
        "plant.toml:8: types.Pump.metrics.flow.unit: is required",
        "plant.toml:9: types.Pump.metrics.p.colour: unknown key; allowed: unit, min, max",
        "plant.toml:9: types.Pump.metrics.p.kind: 'sometimes' is not a kind; use one of gauge",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), (start, problems)
    assert len(problems) == len(expected)


def test_not_toml_and_units_that_disagree() -> None:
    with pytest.raises(ProfileError, match=r"^x.toml:2: not TOML"):
        parse_profiles("[types]\nthis is = = not toml\n", "x.toml")
    text = """[types.a]
interval_s = 1
metrics.level = { unit = "m", min = 0, max = 9 }
[types.b]
interval_s = 1
metrics.level = { unit = "cm", min = 0, max = 900 }
"""
    with pytest.raises(ProfileError, match="unit 'cm' differs from 'm' in type a"):
        parse_profiles(text, "x.toml")


def _workbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workbench.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_profiles_check_command(tmp_path: Path) -> None:
    ok = _workbench("profiles", "check", str(PLANT), "--json")
    assert ok.returncode == 0, ok.stderr
    types = json.loads(ok.stdout)["types"]
    assert types["pump"]["metrics"]["vibration"] == "gauge, 0–100 mm/s"
    assert types["meter"]["metrics"]["volume"].startswith("counter")
    bad = tmp_path / "bad.toml"
    bad.write_text("[types.x]\ninterval_s = 0\n")
    refused = _workbench("profiles", "check", str(bad))
    assert refused.returncode == 2
    assert f"{bad}:2: types.x.interval_s: must be above 0 s" in refused.stderr
    assert "2 problem(s)" in refused.stderr


def test_the_profiles_option_is_what_the_process_runs_on(tmp_path: Path) -> None:
    code = (
        "import sys; from workbench.cli import main; from workbench.profiles.active import active"
        "; main(['kafka', 'status', '--profiles', sys.argv[1]])"
        "; print(active().profiles.type_names)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(PLANT)], capture_output=True, text=True, timeout=60
    )
    assert "('pump', 'meter', 'door')" in run.stdout, run.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[types]\n")
    refused = _workbench("topics", "--profiles", str(bad))
    assert refused.returncode == 2 and "declare at least one device type" in refused.stderr
