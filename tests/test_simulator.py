"""The fleet simulator: schema-valid readings, determinism, physical sanity, labelled anomalies.

Anomalous streams are compared with the clean stream of the same seed: the clean model draws its
noise from its own generator, so outside anomalies the two agree exactly, and inside them the
difference is the anomaly itself.
"""

from __future__ import annotations

import itertools
import math
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition

from tests.cli_helpers import RunningCommand
from workbench import schema
from workbench.broker import LocalBroker
from workbench.config import BACKENDS, TOPIC_READINGS, TOPIC_TRUTH, Settings
from workbench.ports import free_port
from workbench.simulator import (
    KINDS,
    SITES,
    Simulation,
    Truth,
    decode_truth,
    encode_truth,
    run_simulator,
    simulate,
)
from workbench.simulator import run as run_module
from workbench.streams.clients import Deliveries
from workbench.streams.topics import ensure_topics

START = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
DEVICES = 40
BUSY_COUNT = 60_000  # 40 devices at one reading/s each: 25 minutes of simulated time


def _stream(
    anomaly_rate: float,
    count: int = BUSY_COUNT,
    devices: int = DEVICES,
    rate: float = DEVICES,
    seed: int = 7,
) -> tuple[list[schema.Reading], list[Truth]]:
    readings, truths = [], []
    for reading, due in simulate(
        devices, rate, count, anomaly_rate=anomaly_rate, seed=seed, start=START
    ):
        readings.append(reading)
        truths.extend(due)
    return readings, truths


@pytest.fixture(scope="module")
def busy() -> tuple[list[schema.Reading], list[Truth]]:
    """A stream where every device gets an anomaly as soon as its cooldown allows."""
    return _stream(anomaly_rate=1.0)


@pytest.fixture(scope="module")
def clean() -> dict[tuple[str, int], schema.Reading]:
    """The same fleet and seed without anomalies (longer, as it has no dropout gaps)."""
    readings, truths = _stream(anomaly_rate=0.0, count=BUSY_COUNT * 5 // 4)
    assert truths == []
    return {(r.device_id, r.seq): r for r in readings}


def _by_device(readings: list[schema.Reading]) -> dict[str, list[schema.Reading]]:
    out: dict[str, list[schema.Reading]] = defaultdict(list)
    for r in readings:
        out[r.device_id].append(r)
    return out


def _affected(by_device: dict[str, list[schema.Reading]], truth: Truth) -> list[schema.Reading]:
    return [r for r in by_device[truth.device_id] if truth.start <= r.ts <= truth.end]


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def test_every_reading_validates_against_the_schema(busy):
    readings, _ = busy
    for reading in readings:
        decoded = msgspec.json.decode(schema.encode(reading), type=schema.Reading)
        assert decoded == reading
    assert {r.device_type for r in readings} == set(schema.DEVICE_TYPES)


def test_fleet_mixes_types_across_a_few_sites():
    simulation = Simulation(100, 100, seed=1, start=START)
    devices = simulation.fleet.devices
    assert Counter(d.device_type for d in devices) == {
        "thermostat": 30,
        "smart_meter": 30,
        "air_quality": 20,
        "env_sensor": 20,
    }
    assert len({d.device_id for d in devices}) == 100
    assert "thermostat-0007" in {d.device_id for d in devices}
    sites = {s.name: s for s in SITES}
    assert len({d.site for d in devices}) == len(SITES)
    for d in devices:
        assert _km(d.lat, d.lon, sites[d.site].lat, sites[d.site].lon) < 40
    # Types are interleaved in the emission order, not sent in runs of one type.
    first_ten = [d.device_type for d in devices[:10]]
    assert len(set(first_ten)) >= 3


def test_tiny_fleets_still_work():
    items = list(simulate(1, 5, 50, seed=3, start=START))
    assert [r.seq for r, _ in items] == list(range(50))
    assert items[1][0].ts - items[0][0].ts == timedelta(seconds=0.2)


def test_same_seed_same_stream_and_other_seed_differs():
    def run(seed: int) -> list[tuple[bytes, list[bytes]]]:
        return [
            (schema.encode(r), [encode_truth(t) for t in due])
            for r, due in simulate(30, 300, 9_000, anomaly_rate=0.5, seed=seed, start=START)
        ]

    first = run(11)
    assert run(11) == first
    assert any(due for _, due in first)
    assert run(12) != first


def test_fleet_total_rate_and_timestamps_follow_the_simulated_clock():
    items = list(simulate(50, 250, 2_500, anomaly_rate=0.0, seed=2, start=START))
    stamps = [r.ts for r, _ in items]
    assert stamps[0] == START
    assert stamps == sorted(stamps)
    assert stamps[-1] - stamps[0] == timedelta(seconds=2_499 / 250)
    per_device = _by_device([r for r, _ in items])
    assert len(per_device) == 50
    for readings in per_device.values():
        gaps = {b.ts - a.ts for a, b in itertools.pairwise(readings)}
        assert gaps == {timedelta(seconds=50 / 250)}


def test_seq_rises_by_one_except_across_dropouts(busy):
    readings, truths = busy
    dropouts = defaultdict(list)
    for t in truths:
        if t.kind == "dropout":
            dropouts[t.device_id].append(t)
    assert dropouts
    for device, series in _by_device(readings).items():
        seqs = [-1] + [r.seq for r in series]  # seq starts at 0; a leading dropout skips from there
        missing_runs = sorted(b - a - 1 for a, b in itertools.pairwise(seqs) if b != a + 1)
        expected = sorted(int(t.magnitude) for t in dropouts[device] if t.end < series[-1].ts)
        assert missing_runs == expected
        assert all(b > a for a, b in itertools.pairwise(seqs))


def test_energy_registers_integrate_power_and_never_decrease(busy, clean):
    readings, _ = busy
    for series in _by_device(readings).values():
        if series[0].device_type in ("thermostat", "smart_meter"):
            energy = [r.energy for r in series]
            assert energy == sorted(energy)
            assert energy[-1] > energy[0]
        if series[0].device_type in ("air_quality", "env_sensor"):
            battery = [r.battery for r in series]
            assert battery == sorted(battery, reverse=True)
    # One reading per device per second: each step adds power × 1 s (to the register's resolution).
    by_device = _by_device(sorted(clean.values(), key=lambda r: r.ts))
    meter = next(s for s in by_device.values() if s[0].device_type == "smart_meter")
    for a, b in itertools.pairwise(meter):
        assert b.energy - a.energy == pytest.approx(b.power / 3.6e6, abs=2e-6)


def test_values_follow_the_local_time_of_day():
    simulation = Simulation(40, 40 / 120, anomaly_rate=0.0, seed=5, start=START)
    offsets = {s.name: s.utc_offset_h for s in SITES}
    site = {d.device_id: d.site for d in simulation.fleet.devices}
    by_hour: dict[tuple[str, str], list[list[float]]] = defaultdict(lambda: [[] for _ in range(24)])
    for _, r, _ in simulation.emissions(count=40 * 720):  # a day, one reading per 2 min
        hour = int((r.ts.hour + r.ts.minute / 60 + offsets[site[r.device_id]]) % 24)
        for metric in ("temperature", "power", "co2"):
            if hasattr(r, metric):
                by_hour[r.device_type, metric][hour].append(getattr(r, metric))

    def mean(key: tuple[str, str], hours: range) -> float:
        return float(np.mean([v for h in hours for v in by_hour[key][h]]))

    night = range(1, 5)
    assert mean(("air_quality", "co2"), range(10, 16)) > mean(("air_quality", "co2"), night) + 200
    assert mean(("smart_meter", "power"), range(18, 22)) > 1.5 * mean(
        ("smart_meter", "power"), night
    )
    afternoon = range(13, 17)
    assert (
        mean(("thermostat", "temperature"), afternoon)
        > mean(("thermostat", "temperature"), night) + 0.5
    )


def test_every_kind_is_injected_with_a_fitting_metric(busy):
    _, truths = busy
    counts = Counter(t.kind for t in truths)
    assert set(counts) == set(KINDS)
    assert min(counts.values()) >= 5
    for t in truths:
        if t.kind == "dropout":
            assert t.metric is None
        elif t.kind == "location_jump":
            assert t.metric == "location"
        else:
            assert t.metric in schema.METRICS[t.device_type]
        if t.kind == "energy_surge":
            assert t.device_type in ("thermostat", "smart_meter")
        assert decode_truth(encode_truth(t)) == t


def test_truths_never_overlap_on_a_device(busy):
    _, truths = busy
    assert len({t.anomaly_id for t in truths}) == len(truths)
    per_device: dict[str, list[Truth]] = defaultdict(list)
    for t in truths:
        assert t.start <= t.end
        assert t.start.tzinfo is not None
        per_device[t.device_id].append(t)
    for series in per_device.values():
        series.sort(key=lambda t: t.start)
        for a, b in itertools.pairwise(series):
            assert b.start - a.end >= timedelta(seconds=60)  # the cooldown


def _diffs(readings, clean, metric):
    return np.array(
        [getattr(r, metric) - getattr(clean[r.device_id, r.seq], metric) for r in readings]
    )


def _kind(truths, kind):
    return [t for t in truths if t.kind == kind]


def test_spikes_stand_far_outside_the_recent_range(busy, clean):
    readings, truths = busy
    by_device = _by_device(readings)
    checked = 0
    for t in _kind(truths, "spike"):
        hit = _affected(by_device, t)
        assert 1 <= len(hit) <= 3
        assert _diffs(hit, clean, t.metric) == pytest.approx(t.magnitude, abs=0.1)
        first = by_device[t.device_id].index(hit[0])
        recent = [getattr(r, t.metric) for r in by_device[t.device_id][max(0, first - 30) : first]]
        if len(recent) == 30:  # the cooldown keeps the 60 s before an anomaly clean
            low, high = min(recent), max(recent)
            for r in hit:
                value = getattr(r, t.metric)
                assert max(low - value, value - high) > high - low
            checked += 1
    assert checked >= 10


def test_level_shifts_and_drifts_move_the_metric_well_beyond_its_noise(busy, clean):
    readings, truths = busy
    by_device = _by_device(readings)
    for t in _kind(truths, "level_shift"):
        hit = _affected(by_device, t)
        diff = _diffs(hit, clean, t.metric)
        assert diff == pytest.approx(t.magnitude, abs=0.1)
        spread = np.std([getattr(clean[r.device_id, r.seq], t.metric) for r in hit])
        assert abs(t.magnitude) > 3 * spread
    for t in _kind(truths, "drift"):
        hit = _affected(by_device, t)
        diff = np.abs(_diffs(hit, clean, t.metric))
        assert np.all(np.diff(diff) >= -0.1)  # grows steadily…
        assert diff[-1] == pytest.approx(abs(t.magnitude), abs=0.1)  # …to the full offset
        assert diff[0] < abs(t.magnitude) / 5 or len(hit) < 10


def test_stuck_sensors_repeat_one_exact_value(busy, clean):
    readings, truths = busy
    by_device = _by_device(readings)
    for t in _kind(truths, "stuck"):
        hit = _affected(by_device, t)
        assert len(hit) >= 3
        assert {getattr(r, t.metric) for r in hit} == {t.magnitude}
        assert len({getattr(clean[r.device_id, r.seq], t.metric) for r in hit}) > 1


def test_dropouts_silence_the_device_and_skip_seq(busy):
    readings, truths = busy
    by_device = _by_device(readings)
    checked = 0
    for t in _kind(truths, "dropout"):
        assert _affected(by_device, t) == []
        series = by_device[t.device_id]
        before = [r for r in series if r.ts < t.start]
        after = [r for r in series if r.ts > t.end]
        if before and after:
            assert after[0].seq - before[-1].seq - 1 == t.magnitude >= 30
            assert after[0].ts - before[-1].ts == timedelta(seconds=t.magnitude + 1)
            checked += 1
    assert checked >= 10


def test_energy_surges_multiply_power_and_the_register_follows(busy, clean):
    readings, truths = busy
    by_device = _by_device(readings)
    checked = 0
    for t in _kind(truths, "energy_surge"):
        hit = _affected(by_device, t)
        assert t.magnitude >= 3
        for r in hit:
            assert r.power == pytest.approx(clean[r.device_id, r.seq].power * t.magnitude, abs=1.0)
        series = by_device[t.device_id]
        i = series.index(hit[0])
        if i > 0 and i + len(hit) < len(series):
            before, after = series[i - 1], series[i + len(hit)]
            gained = after.energy - before.energy
            clean_gain = (
                clean[after.device_id, after.seq].energy
                - clean[before.device_id, before.seq].energy
            )
            extra = sum(r.power - clean[r.device_id, r.seq].power for r in hit) / 3.6e6
            assert gained - clean_gain == pytest.approx(extra, rel=0.01, abs=1e-5)
            assert gained > 2 * clean_gain
            checked += 1
    assert checked >= 5


def test_location_jumps_move_the_device_far_away(busy, clean):
    readings, truths = busy
    by_device = _by_device(readings)
    for t in _kind(truths, "location_jump"):
        hit = _affected(by_device, t)
        assert hit
        for r in hit:
            home = clean[r.device_id, r.seq]
            assert _km(home.lat, home.lon, r.lat, r.lon) == pytest.approx(t.magnitude, rel=0.01)
            assert t.magnitude >= 300


def test_noise_bursts_raise_the_variance_sharply(busy, clean):
    readings, truths = busy
    by_device = _by_device(readings)
    for t in _kind(truths, "noise_burst"):
        hit = _affected(by_device, t)
        assert len(hit) >= 3
        base = np.array([getattr(clean[r.device_id, r.seq], t.metric) for r in hit])
        noise = np.std(np.diff(base)) / math.sqrt(2)
        assert np.std(_diffs(hit, clean, t.metric)) > 4 * noise or len(hit) < 20


def _check_labels(
    readings: list[schema.Reading],
    truths: list[Truth],
    clean: dict[tuple[str, int], schema.Reading],
) -> None:
    """Readings differ from the clean model exactly inside truth windows; gaps are dropouts."""
    windows: dict[str, list[Truth]] = defaultdict(list)
    for t in truths:
        windows[t.device_id].append(t)
    changed: set[str] = set()
    for r in readings:
        c = clean[r.device_id, r.seq]
        assert r.ts == c.ts
        # Energy is left out: the register remembers earlier power anomalies.
        fields = [m for m in schema.METRICS[r.device_type] if m != "energy"] + ["lat", "lon"]
        inside = [t for t in windows[r.device_id] if t.start <= r.ts <= t.end]
        assert len(inside) <= 1
        if any(getattr(r, f) != getattr(c, f) for f in fields):
            assert inside, f"{r} differs from the clean model outside any anomaly"
            changed.add(inside[0].anomaly_id)
        if inside:
            assert inside[0].kind != "dropout"
    for t in truths:
        assert (t.anomaly_id in changed) == (t.kind != "dropout"), t
    for device, series in _by_device(readings).items():
        seqs = [-1] + [r.seq for r in series]
        skipped = sum(b - a - 1 for a, b in itertools.pairwise(seqs))
        dropped = [t for t in windows[device] if t.kind == "dropout" and t.end < series[-1].ts]
        assert skipped == sum(t.magnitude for t in dropped)


def test_anomalies_change_readings_only_inside_their_windows(busy, clean):
    readings, truths = busy
    _check_labels(readings, truths, clean)


@pytest.mark.parametrize(
    ("devices", "rate", "count"),
    [
        (6, 0.6, 12_000),  # a reading every 10 s: several anomalies per device per numpy block
        (5_000, 5_000, 17_000),  # fleets larger than a block are computed in slices of a round
    ],
)
def test_labels_hold_for_slow_devices_and_large_fleets(devices, rate, count):
    readings, truths = _stream(1.0, count, devices, rate, seed=3)
    clean_readings, _ = _stream(0.0, count * 2, devices, rate, seed=3)
    clean = {(r.device_id, r.seq): r for r in clean_readings}
    assert len(truths) >= 20
    _check_labels(readings, truths, clean)
    for r in readings[:: len(readings) // 500]:
        assert msgspec.json.decode(schema.encode(r), type=schema.Reading) == r


def test_default_rate_gives_a_few_anomalies_a_minute():
    truths = [t for _, due in simulate(100, 100, 60_000, seed=4, start=START) for t in due]
    per_minute = len(truths) / 10
    assert 1.5 <= per_minute <= 5


def test_injected_counts_anomalies_begun_so_far():
    simulation = Simulation(40, 40, anomaly_rate=1.0, seed=7, start=START)
    reported = [t for _, _, due in simulation.emissions(count=10_007) for t in due]
    injected = simulation.injected
    assert injected == len(reported) + len(simulation.close()) > 40


def test_open_anomalies_are_reported_at_the_end_cut_to_the_last_reading():
    items = list(simulate(10, 10, 200, anomaly_rate=1.0, seed=9, start=START))
    last_reading, final = items[-1]
    assert final, "anomalies running at the end are reported with the last reading"
    for t in final:
        assert t.start <= t.end <= last_reading.ts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"devices": 0}, "devices must be a whole number from 1"),
        ({"devices": 2.5}, "devices must be a whole number"),
        ({"rate": 0}, "rate must be readings per second, above 0"),
        ({"rate": float("nan")}, "rate must be readings per second"),
        ({"rate": 5e6}, "at most 1,000,000"),
        ({"anomaly_rate": 1.5}, "anomaly_rate is a probability per device per minute"),
        ({"anomaly_rate": -0.1}, "must be from 0 to 1"),
        ({"count": 0}, "count must be a whole number of readings, at least 1"),
        ({"start": datetime(2025, 1, 1)}, "start must be a timezone-aware"),
    ],
)
def test_bad_arguments_are_refused_clearly(kwargs, message):
    args = {"devices": 10, "rate": 10, "count": 10} | kwargs
    with pytest.raises(ValueError, match=message):
        simulate(**args)


class FakeProducer:
    """Records what the simulator would send to Kafka; the broker acknowledges it at once."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.flushed = self.closed = False
        self.interrupt_at: int | None = None
        """Raise KeyboardInterrupt (as Ctrl-C would) when asked to send this many readings."""

    def send(self, topic, value, key=None, headers=None):
        if topic == TOPIC_READINGS and self.interrupt_at is not None:
            self.interrupt_at -= 1
            if not self.interrupt_at:
                raise KeyboardInterrupt
        self.sent.append((topic, value, key))

    def poll(self, timeout_s):
        pass

    def flush(self, timeout_s=30.0):
        self.flushed = True

    def close(self, timeout_s=10.0):
        self.closed = True

    def deliveries(self, topic=None) -> Deliveries:
        n = sum(1 for t, _, _ in self.sent if topic in (None, t))
        return Deliveries(sent=n, delivered=n, failed=0, stalled_s=0.0)


@pytest.fixture
def producer(monkeypatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(run_module, "make_producer", lambda settings, client_id: fake)
    return fake


def test_run_simulator_publishes_paced_keyed_readings_and_truth(producer):
    lines: list[str] = []
    stats = run_simulator(
        Settings(),
        devices=20,
        rate=2_000,
        count=1_000,
        anomaly_rate=1.0,
        seed=5,
        progress=lines.append,
    )
    readings = [
        msgspec.json.decode(v, type=schema.Reading)
        for t, v, _ in producer.sent
        if t == TOPIC_READINGS
    ]
    truths = [decode_truth(v) for t, v, _ in producer.sent if t == TOPIC_TRUTH]
    assert {t for t, _, _ in producer.sent} == {TOPIC_READINGS, TOPIC_TRUTH}
    assert all(
        k == decode_truth(v).device_id.encode()
        if t == TOPIC_TRUTH
        else k == msgspec.json.decode(v)["device_id"].encode()
        for t, v, k in producer.sent
    )
    assert stats.sent == len(readings) == 1_000
    assert stats.anomalies == len(truths) > 0
    assert 0.45 <= stats.elapsed_s < 3.0  # 1,000 readings at 2,000/s take half a second
    assert producer.flushed and producer.closed
    assert abs(readings[0].ts - datetime.now(UTC)) < timedelta(seconds=10)
    assert all(t.end <= readings[-1].ts for t in truths)
    assert lines[-1].startswith("done: 1,000 of 1,000 readings delivered in ")
    assert "readings/s" in lines[-1] and "· 0 not delivered ·" in lines[-1]
    # Same seed, fleet and rate as simulate(): the same devices, seqs and anomalies.
    offline = list(simulate(20, 2_000, 1_000, anomaly_rate=1.0, seed=5))
    assert [(r.device_id, r.seq) for r in readings] == [(r.device_id, r.seq) for r, _ in offline]
    offline_truths = [t for _, due in offline for t in due]
    assert [(t.device_id, t.kind, t.metric) for t in truths] == [
        (t.device_id, t.kind, t.metric) for t in offline_truths
    ]


def test_run_simulator_stops_on_duration_and_on_request(producer):
    stats = run_simulator(Settings(), devices=10, rate=1_000, duration_s=0.3, anomaly_rate=0.0)
    assert stats.sent == 300
    assert 0.25 <= stats.elapsed_s < 2.0

    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    stats = run_simulator(Settings(), devices=10, rate=1_000, anomaly_rate=0.0, stop_event=stop)
    assert 100 <= stats.sent <= 1_000
    assert producer.flushed and producer.closed


def test_run_simulator_stops_cleanly_on_ctrl_c(producer):
    producer.interrupt_at = 2_001
    stats = run_simulator(Settings(), devices=50, rate=20_000, anomaly_rate=1.0, seed=1)
    readings = [v for t, v, _ in producer.sent if t == TOPIC_READINGS]
    truths = [decode_truth(v) for t, v, _ in producer.sent if t == TOPIC_TRUTH]
    assert stats.sent == len(readings) == 2_000
    assert stats.anomalies == len(truths) >= 50  # every device was in an anomaly when it stopped
    last = msgspec.json.decode(readings[-1], type=schema.Reading)
    assert all(t.end <= last.ts for t in truths)
    assert producer.flushed and producer.closed


def test_run_simulator_validates_before_connecting(producer):
    with pytest.raises(ValueError, match="either a duration or a count"):
        run_simulator(Settings(), devices=10, rate=10, duration_s=1, count=10)
    assert producer.sent == []


@pytest.mark.parametrize("bound", [{"count": 2_000}, {"duration_s": 100.0}])
def test_backfill_replays_past_fleet_life_at_once_then_stops(producer, bound):
    before = datetime.now(UTC)
    stats = run_simulator(
        Settings(), devices=20, rate=20, seed=3, backfill_s=100.0, **bound
    )  # 100 s of fleet life: real time would take 100 s
    readings = [
        msgspec.json.decode(v, type=schema.Reading)
        for t, v, _ in producer.sent
        if t == TOPIC_READINGS
    ]
    assert stats.elapsed_s - 100.0 < 5.0  # sent in a burst, not paced
    assert 1_950 <= len(readings) <= 2_000
    assert readings[0].ts < before - timedelta(seconds=95)
    assert all(r.ts <= datetime.now(UTC) for r in readings)  # nothing from the future


# --- `workbench simulate` as a user runs it: a script's background job (SIGINT ignored) ---------

NOT_DELIVERED = r"^stopped: .*· (\d[\d,]*) not delivered"


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def _simulator_lines(output: str) -> list[str]:
    """The simulator's own lines (not the Kafka clients' log records)."""
    return [line for line in output.splitlines() if not line.startswith(("ERROR ", "WARNING "))]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_simulate_without_a_broker_says_so_and_stops_on_a_signal(
    sig: signal.Signals, tmp_path: Path
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    args = ["simulate", "--bootstrap-servers", nowhere, "--devices", "10", "--rate", "300"]
    with RunningCommand(*args, env={"WORKBENCH_DATA_DIR": str(tmp_path)}) as simulate:
        simulate.wait_for(f"broker unreachable at {nowhere}", timeout_s=30)
        time.sleep(6)  # a window and more of the client's reconnection errors
        code, took = simulate.stop(sig, timeout_s=30)
    output = simulate.output
    assert code == 1 and took < 5, output
    assert not re.search(r"[1-9][\d,]* readings (delivered|sent)", output)
    final = _simulator_lines(output)[-1]
    assert re.search(NOT_DELIVERED, final) and final.endswith(" 0 not delivered"), output
    # The client's reconnection errors (several a second) are summarised, not streamed.
    assert len(re.findall("ECONNREFUSED", output)) <= 3, output
    assert re.search(r"[\d,]+ more Kafka client errors in the last [\d.]+ s", output), output


def _end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return {tp.partition: o for tp, o in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def _read_since(settings: Settings, topic: str, offsets: dict[int, int]) -> list:
    """Every record a consumer reads on ``topic`` from ``offsets`` to the current end."""
    end = _end_offsets(settings, topic)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False)
    records: list = []
    try:
        partitions = [TopicPartition(topic, p) for p in end]
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, offsets.get(tp.partition, 0))
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < end[tp.partition] for tp in partitions):
            assert time.monotonic() < deadline, f"read {len(records):,} records in 60 s"
            for batch in consumer.poll(500).values():
                records.extend(batch)
    finally:
        consumer.close()
    return records


@pytest.mark.kafka
@pytest.mark.parametrize("backend", BACKENDS)
def test_simulate_reports_as_delivered_what_a_consumer_then_reads(
    kafka: Settings, backend: str
) -> None:
    ensure_topics(kafka)
    before = _end_offsets(kafka, TOPIC_READINGS)
    args = ["simulate", "--bootstrap-servers", kafka.bootstrap, "--client", backend]
    args += ["--devices", "20"]
    args += ["--rate", "2000", "--count", "3000", "--anomaly-rate", "0"]
    with RunningCommand(*args) as simulate:
        assert simulate.proc.wait(60) == 0, simulate.output
    final = _simulator_lines(simulate.output)[-1]
    assert final.startswith("done: 3,000 of 3,000 readings delivered in "), simulate.output
    assert "· 0 not delivered ·" in final
    assert len(_read_since(kafka, TOPIC_READINGS, before)) == 3_000


@pytest.mark.kafka
def test_simulate_through_a_broker_outage_counts_only_acknowledged_readings(
    broker: LocalBroker, kafka: Settings
) -> None:
    ensure_topics(kafka)
    before = _end_offsets(kafka, TOPIC_READINGS)
    args = ["simulate", "--bootstrap-servers", kafka.bootstrap, "--devices", "20"]
    with RunningCommand(*args, "--rate", "300", "--anomaly-rate", "0") as simulate:
        simulate.wait_for(r"[1-9][\d,]* readings delivered")
        broker.stop()
        try:
            stopped_at = len(simulate.lines)
            simulate.wait_for(r"^broker unreachable \(nothing acknowledged", after=stopped_at)
            code, took = simulate.stop(signal.SIGTERM, timeout_s=30)
        finally:
            broker.start()
    output = simulate.output
    assert code == 1 and took < 10, output
    final = _simulator_lines(output)[-1]
    figures = re.search(r"^stopped: ([\d,]+) of ([\d,]+) readings delivered", final)
    undelivered = re.search(NOT_DELIVERED, final)
    assert figures and undelivered, output
    delivered, sent, missing = map(_count, (*figures.groups(), undelivered[1]))
    assert missing > 0 and delivered + missing == sent
    # Status lines during the outage never counted a reading the broker had not acknowledged.
    during = [_count(m) for m in re.findall(r"(?:^|· )([\d,]+) readings delivered", output, re.M)]
    assert max(during) == delivered, output
    assert delivered <= len(_read_since(kafka, TOPIC_READINGS, before)) <= sent
