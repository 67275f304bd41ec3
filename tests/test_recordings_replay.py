"""`workbench replay` against the real broker: every row of a recording on the topic, keyed by
device, in the profile's wire format with the recording's own (or shifted) times, paced by its gaps;
rows that do not fit counted with their reasons; progress, and a clean stop on SIGINT or SIGTERM."""

from __future__ import annotations

import csv
import itertools
import json
import re
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.cli_helpers import RunningCommand
from workbench.config import Settings
from workbench.explore.recent import Record, decode_readings, read_recent
from workbench.profiles.compile import compile_profiles
from workbench.profiles.load import load_profiles
from workbench.streams.validate import ReadingValidator

pytestmark = pytest.mark.kafka

RECORDING = Path(__file__).parent / "data" / "recordings"
PROFILE = RECORDING / "boilers.toml"
FINAL = (
    r"^(done|stopped): ([\d,]+) of ([\d,]+) rows delivered in ([\d.,]+) s .*· ([\d,]+) not "
    "delivered"
)


def _replay(kafka: Settings, topic: str, path: Path, *options: str) -> list[str]:
    """Run `workbench replay` to the end; its lines."""
    run = subprocess.run(
        [
            *(sys.executable, "-m", "workbench.cli", "replay", str(path)),
            *("--profiles", str(PROFILE), "--type", "boiler", "--topic", topic),
            *("--bootstrap-servers", kafka.bootstrap, *options),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stderr.splitlines()


def _read_back(kafka: Settings, topic: str, count: int) -> tuple[list[Record], list]:
    records = read_recent(kafka, topic, limit=count + 1)
    validator = ReadingValidator(profiles=compile_profiles(load_profiles(PROFILE)))
    readings, rejected = decode_readings(records, validator=validator)
    assert rejected == [], rejected[:3]
    return records, readings


def _recorded_rows() -> dict[str, list[dict[str, str]]]:
    return {
        p.stem: list(csv.DictReader(p.open(newline="")))
        for p in sorted(RECORDING.glob("boiler-*.csv"))
    }


def test_every_row_goes_out_keyed_by_device_in_the_profiles_wire_format(
    kafka: Settings, topics: dict[str, str]
) -> None:
    lines = _replay(
        kafka, topics["readings"], RECORDING, "--time-column", "timestamp", "--as-fast-as-possible"
    )
    assert re.match(
        r"^done: 1,440 of 1,440 rows delivered in .* · 0 not delivered · 0 skipped$", lines[-1]
    ), lines
    records, readings = _read_back(kafka, topics["readings"], 1440)
    assert len(records) == 1440
    wire = json.loads(records[0].value)
    assert set(wire) == {"device_id", "ts_ms", "device_type", "seq", "lat", "lon"} | {
        "temperature",
        "power",
        "energy",
    }  # the recording's label and timestamp columns are not sent
    assert all(r.key == json.loads(r.value)["device_id"].encode() for r in records)
    by_device = defaultdict(list)
    for reading in readings:
        by_device[reading.device_id].append(reading)
    recorded = _recorded_rows()
    assert set(by_device) == set(recorded)  # each file is one device, named after it
    for device, rows in recorded.items():
        got = by_device[device]
        assert [r.seq for r in got] == list(range(360))  # one device's rows stay in order
        assert [r.ts for r in got] == [datetime.fromisoformat(row["timestamp"]) for row in rows]
        assert [r.temperature for r in got] == [float(row["temperature"]) for row in rows]


def test_rows_that_do_not_fit_are_counted_with_their_reasons_and_the_rest_go_out(
    kafka: Settings, topics: dict[str, str], tmp_path: Path
) -> None:
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    good = {"temperature": 60, "power": 9000, "energy": 5, "note": "ignored"}
    rows = [
        {"who": "B-1", "at": t0.isoformat(), **good},
        {"who": "B-2", "at": t0.timestamp() + 10, **good},  # epoch seconds
        {"who": "B-1", "at": t0.isoformat(), **good, "power": "lots"},
        {"who": "B-2", **good},
        {"who": "B-1", "at": (t0 + timedelta(seconds=20)).isoformat(), **good},
    ]
    path = tmp_path / "gateway.jsonl"
    path.write_text("\n".join([*(json.dumps(r) for r in rows), "{oops"]) + "\n")
    lines = _replay(
        kafka,
        topics["readings"],
        path,
        "--time-column",
        "at",
        "--device-column",
        "who",
        "--as-fast-as-possible",
    )
    assert lines[-1].startswith("done: 3 of 3 rows delivered in ") and lines[-1].endswith(
        "· 0 not delivered · 3 skipped"
    ), lines
    assert lines[-5:-2] == [
        "3 rows skipped, not readings:",
        "  gateway.jsonl:3: power 'lots' is not a number",
        "  gateway.jsonl:4: no time",
    ]
    assert lines[-2].startswith("  gateway.jsonl:6: not JSON: "), lines
    _, readings = _read_back(kafka, topics["readings"], 3)
    assert sorted((r.device_id, r.ts - t0) for r in readings) == [
        ("B-1", timedelta(0)),
        ("B-1", timedelta(seconds=20)),
        ("B-2", timedelta(seconds=10)),
    ]


def test_rows_are_paced_by_the_recordings_gaps_and_shifted_to_now(
    kafka: Settings, topics: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "boiler-9.csv"
    source = (RECORDING / "boiler-04.csv").read_text().splitlines()
    path.write_text("\n".join(source[:21]) + "\n")  # 20 rows, 10 s apart: 190 s of recording
    before = datetime.now(UTC)
    lines = _replay(
        kafka,
        topics["readings"],
        path,
        "--time-column",
        "timestamp",
        "--speed",
        "95",
        "--shift-to-now",
    )
    final = re.match(FINAL, lines[-1])
    assert final and final[2] == final[3] == "20", lines
    assert 1.9 <= float(final[4]) < 6.0  # 190 s of recording at 95×: 2 s
    _, readings = _read_back(kafka, topics["readings"], 20)
    assert abs(readings[0].ts - before) < timedelta(seconds=5)  # the first row is "now"
    gaps = [b.ts - a.ts for a, b in itertools.pairwise(readings)]
    assert all(abs(gap - timedelta(seconds=10)) < timedelta(milliseconds=1) for gap in gaps)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_replay_shows_its_progress_and_stops_cleanly_on_a_signal(
    kafka: Settings, topics: dict[str, str], sig: signal.Signals
) -> None:
    args = ["replay", str(RECORDING), "--profiles", str(PROFILE), "--type", "boiler"]
    args += ["--time-column", "timestamp", "--speed", "40", "--topic", topics["readings"]]
    with RunningCommand(*args, "--bootstrap-servers", kafka.bootstrap) as replay:
        progress = replay.wait_for(
            r"^([1-9][\d,]*) rows delivered · ([\d,]+) rows/s · \d+ pending · 0 failed · "
            r"(\d+) % of the recording · recording time (2024-03-04T08:\S+)$",
            timeout_s=30,
        )
        replay.wait_for(r"rows delivered", after=replay.lines.index(progress.string) + 1)
        code, took = replay.stop(sig, timeout_s=30)
    output = replay.output
    assert code == 0 and took < 5, output
    assert int(progress[2].replace(",", "")) > 0 and int(progress[3]) < 100
    assert datetime.fromisoformat(progress[4]) > datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
    final = re.match(FINAL, output.splitlines()[-1])
    assert final and final[1] == "stopped" and final[2] == final[3] and final[5] == "0", output
    delivered = int(final[2].replace(",", ""))
    assert 0 < delivered < 1440
    assert len(read_recent(kafka, topics["readings"], limit=1440)) == delivered
