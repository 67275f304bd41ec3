"""Labelled anomalies injected into the clean fleet model, and their ground-truth records.

Each device independently starts an anomaly with probability ``anomaly_rate`` per minute of
simulated time, never while another one is running on it nor within a short cooldown after one.
An anomaly changes one metric of one device (or its location, or whether it sends at all) for one
to a few readings (spikes) or 30 s to 4 min (everything else), by far more than the device's noise.
Readings carry no trace of this; the truth goes out separately, one :class:`Truth` per anomaly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import msgspec
import numpy as np

from workbench.simulator.fleet import DECIMALS, Fleet
from workbench.simulator.schedule import Schedule

KINDS: tuple[str, ...] = (
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "dropout",
    "energy_surge",
    "location_jump",
    "noise_burst",
)
LOCATION = "location"
"""The ``metric`` of a location jump (both ``lat`` and ``lon`` move)."""

_VALUE_TARGETS: dict[str, dict[str, tuple[str, ...]]] = {
    "thermostat": {
        "spike": ("temperature", "humidity", "power"),
        "level_shift": ("temperature", "humidity"),
        "drift": ("temperature",),
        "stuck": ("temperature", "humidity"),
        "energy_surge": ("power",),
        "noise_burst": ("temperature", "power"),
    },
    "smart_meter": {
        "spike": ("power",),
        "level_shift": ("power",),
        "drift": ("power",),
        "stuck": ("power",),
        "energy_surge": ("power",),
        "noise_burst": ("power",),
    },
    "air_quality": {
        "spike": ("co2", "pm25", "temperature"),
        "level_shift": ("co2", "temperature"),
        "drift": ("co2", "temperature"),
        "stuck": ("co2", "temperature", "humidity"),
        "noise_burst": ("co2", "pm25"),
    },
    "env_sensor": {
        "spike": ("temperature", "humidity"),
        "level_shift": ("temperature", "humidity"),
        "drift": ("temperature", "humidity"),
        "stuck": ("temperature", "humidity"),
        "noise_burst": ("temperature", "humidity"),
    },
}
TARGETS: dict[str, dict[str, tuple[str | None, ...]]] = {
    t: {**kinds, "dropout": (None,), "location_jump": (LOCATION,)}
    for t, kinds in _VALUE_TARGETS.items()
}
"""device type → anomaly kind → the metrics it may hit (None: the device as a whole)."""

OFFSETS: dict[str, dict[str, tuple[float, float]]] = {
    "spike": {
        "temperature": (8, 15),
        "humidity": (25, 40),
        "power": (3, 6),
        "co2": (1500, 3000),
        "pm25": (100, 250),
    },
    "level_shift": {
        "temperature": (3, 6),
        "humidity": (15, 25),
        "power": (1, 2),
        "co2": (500, 1000),
        "pm25": (40, 80),
    },
    "drift": {"temperature": (4, 8), "humidity": (15, 25), "power": (1.5, 3), "co2": (600, 1200)},
}
"""Size ranges of additive anomalies, in metric units (power: multiples of the device's nominal
power). Temperature moves either way, humidity towards 50 % (never clipped), the others up."""
NOISE_FACTOR = (10.0, 20.0)
"""noise_burst: the metric's noise standard deviation is multiplied by this."""
SURGE_FACTOR = (3.0, 5.0)
"""energy_surge: power is multiplied by this (and the energy register integrates it)."""
JUMP_KM = (300.0, 3000.0)
SPIKE_READINGS = (1, 3)
DURATION_S = (30.0, 240.0)
MIN_READINGS = 3
"""Sustained anomalies cover at least this many readings, so a slow device still shows them."""
COOLDOWN_S = 60.0
"""Clean time a device gets after an anomaly before the next one may start."""
EARTH_RADIUS_KM = 6371.0


class Truth(msgspec.Struct, frozen=True, kw_only=True):
    """Ground truth for one injected anomaly, published to ``iot.truth`` once it has ended.

    ``start``/``end`` are the times of the first and last affected reading (inclusive; for a
    dropout, of the first and last reading not sent). ``magnitude`` depends on ``kind``:
    spike, level_shift: the offset added; drift: the offset reached at the end (metric units, W for
    power); stuck: the repeated value; noise_burst: the noise multiplier; energy_surge: the power
    multiplier; location_jump: the distance moved, km; dropout: the number of readings not sent.
    """

    anomaly_id: str
    device_id: str
    device_type: str
    kind: str
    metric: str | None
    start: datetime
    end: datetime
    magnitude: float


_truth_encoder = msgspec.json.Encoder()
_truth_decoder = msgspec.json.Decoder(Truth)


def encode_truth(truth: Truth) -> bytes:
    """A truth record's wire form (JSON)."""
    return _truth_encoder.encode(truth)


def decode_truth(data: bytes) -> Truth:
    """A truth record from its wire form."""
    return _truth_decoder.decode(data)


@dataclass(slots=True)
class Anomaly:
    """One anomaly in progress: device ``device`` from its ``first`` to its ``last`` reading."""

    anomaly_id: str
    device: int
    kind: str
    metric: str | None
    first: int
    last: int
    magnitude: float
    target: tuple[float, float] | None = None
    """location_jump: where the device appears to be."""
    frozen: float | None = None
    """stuck: the value repeated (taken from the first affected reading)."""


def _destination(lat: float, lon: float, bearing: float, km: float) -> tuple[float, float]:
    """The point ``km`` from (lat, lon) along ``bearing`` (radians) on a spherical Earth."""
    phi, lam, delta = math.radians(lat), math.radians(lon), km / EARTH_RADIUS_KM
    phi2 = math.asin(
        math.sin(phi) * math.cos(delta) + math.cos(phi) * math.sin(delta) * math.cos(bearing)
    )
    lam2 = lam + math.atan2(
        math.sin(bearing) * math.sin(delta) * math.cos(phi),
        math.cos(delta) - math.sin(phi) * math.sin(phi2),
    )
    return math.degrees(phi2), (math.degrees(lam2) + 180.0) % 360.0 - 180.0


class Injector:
    """Starts anomalies on a fleet at random and applies them to blocks of clean values."""

    def __init__(
        self,
        fleet: Fleet,
        schedule: Schedule,
        anomaly_rate: float,
        seed: np.random.SeedSequence,
        run_id: str,
    ) -> None:
        self._fleet = fleet
        self._schedule = schedule
        self._rng = np.random.default_rng(seed)
        self._run_id = run_id
        interval = schedule.interval_s
        self._p_start = 1.0 - (1.0 - anomaly_rate) ** (interval / 60.0)
        """Chance that an eligible device starts an anomaly at one of its readings."""
        self._cooldown = math.ceil(COOLDOWN_S / interval)
        self._eligible_from = np.zeros(fleet.size, dtype=np.int64)
        self._busy_until = np.full(fleet.size, -1, dtype=np.int64)
        self.running: dict[int, Anomaly] = {}
        """device → its anomaly that has started but not yet ended."""
        self.ended: list[Anomaly] = []
        """Anomalies that have ended, until the caller collects them."""
        self.started = 0

    def step(self, values: dict[str, np.ndarray], j0: int, d0: int) -> np.ndarray:
        """Start and apply anomalies in a block (rounds j0…, devices d0…), editing ``values``.

        Returns which cells are sent (False during dropouts); anomalies that end in the block are
        moved from :attr:`running` to :attr:`ended`.
        """
        rounds, columns = values["lat"].shape
        sent = np.ones((rounds, columns), dtype=bool)

        def run_out(c: int) -> None:
            """Apply device ``d0 + c``'s anomaly to this block; retire it if it ends here."""
            anomaly = self.running[d0 + c]
            rows = slice(max(anomaly.first - j0, 0), min(anomaly.last - j0, rounds - 1) + 1)
            self._apply(anomaly, values, sent, rows, c, j0)
            if anomaly.last < j0 + rounds:
                self.ended.append(self.running.pop(d0 + c))

        if self._p_start > 0.0:
            hits = np.nonzero(self._rng.random((rounds, columns)) < self._p_start)
            for r, c in zip(*(h.tolist() for h in hits), strict=True):  # row-major: slot order
                if j0 + r >= self._eligible_from[d0 + c]:
                    if d0 + c in self.running:  # ended earlier in this block: finish it first
                        run_out(c)
                    self._start(d0 + c, j0 + r)
        for c in np.flatnonzero(self._busy_until[d0 : d0 + columns] >= j0).tolist():
            run_out(c)
        return sent

    def truth(self, anomaly: Anomaly, until: int | None = None) -> Truth:
        """The truth record of an anomaly, its end cut at reading index ``until`` if given."""
        fleet, schedule, d = self._fleet, self._schedule, anomaly.device
        last = anomaly.last if until is None else min(anomaly.last, until)
        magnitude = anomaly.magnitude
        if anomaly.kind == "stuck" and anomaly.frozen is not None:
            magnitude = round(anomaly.frozen, DECIMALS[anomaly.metric or ""])
        elif anomaly.kind == "dropout":
            magnitude = float(last - anomaly.first + 1)
        elif anomaly.kind == "drift":  # the offset reached by the (possibly cut) end
            done = (last - anomaly.first + 1) / (anomaly.last - anomaly.first + 1)
            magnitude = round(magnitude * done, DECIMALS[anomaly.metric or ""])
        return Truth(
            anomaly_id=anomaly.anomaly_id,
            device_id=fleet.ids[d],
            device_type=fleet.types[d],
            kind=anomaly.kind,
            metric=anomaly.metric,
            start=schedule.time(schedule.slot(d, anomaly.first)),
            end=schedule.time(schedule.slot(d, last)),
            magnitude=magnitude,
        )

    def _start(self, d: int, j: int) -> None:
        """Draw a new anomaly for device ``d`` starting at its reading ``j``."""
        rng, fleet = self._rng, self._fleet
        targets = TARGETS[fleet.types[d]]
        kind = list(targets)[rng.integers(len(targets))]
        metric = targets[kind][rng.integers(len(targets[kind]))]
        if kind == "spike":
            length = int(rng.integers(SPIKE_READINGS[0], SPIKE_READINGS[1] + 1))
        else:
            seconds = rng.uniform(*DURATION_S)
            length = max(MIN_READINGS, round(seconds / self._schedule.interval_s))
        self.started += 1
        anomaly = Anomaly(
            anomaly_id=f"{self._run_id}-{self.started:06d}",
            device=d,
            kind=kind,
            metric=metric,
            first=j,
            last=j + length - 1,
            magnitude=0.0,
        )
        if kind in OFFSETS:
            low, high = OFFSETS[kind][metric]  # type: ignore[index]
            size = rng.uniform(low, high)
            if metric == "power":
                size *= fleet.power_nominal[d]
            elif metric == "temperature":
                size *= rng.choice((-1.0, 1.0))
            elif metric == "humidity" and fleet.hum_base[d] > 50.0:
                size = -size
            anomaly.magnitude = round(float(size), DECIMALS[metric])  # type: ignore[index]
        elif kind == "noise_burst":
            anomaly.magnitude = round(float(rng.uniform(*NOISE_FACTOR)), 2)
        elif kind == "energy_surge":
            anomaly.magnitude = round(float(rng.uniform(*SURGE_FACTOR)), 2)
        elif kind == "location_jump":
            km = float(rng.uniform(*JUMP_KM))
            bearing = float(rng.uniform(0.0, 2.0 * math.pi))
            anomaly.target = _destination(fleet.lat[d], fleet.lon[d], bearing, km)
            anomaly.magnitude = round(km, 1)
        self.running[d] = anomaly
        self._busy_until[d] = anomaly.last
        self._eligible_from[d] = anomaly.last + 1 + self._cooldown

    def _apply(
        self,
        anomaly: Anomaly,
        values: dict[str, np.ndarray],
        sent: np.ndarray,
        rows: slice,
        c: int,
        j0: int,
    ) -> None:
        """Apply one anomaly to rows ``rows`` of column ``c`` of a block."""
        kind = anomaly.kind
        if kind == "dropout":
            sent[rows, c] = False
            return
        if kind == "location_jump":
            values["lat"][rows, c], values["lon"][rows, c] = anomaly.target  # type: ignore[misc]
            return
        column = values[anomaly.metric][:, c]  # type: ignore[index]  # a view: edits stick
        if kind in ("spike", "level_shift"):
            column[rows] += anomaly.magnitude
        elif kind == "drift":
            done = np.arange(rows.start, rows.stop) + j0 - anomaly.first + 1
            column[rows] += anomaly.magnitude * done / (anomaly.last - anomaly.first + 1)
        elif kind == "stuck":
            if anomaly.frozen is None:
                anomaly.frozen = float(column[rows.start])
            column[rows] = anomaly.frozen
        elif kind == "noise_burst":
            sigma = self._fleet.sigma[anomaly.metric][anomaly.device]  # type: ignore[index]
            extra = sigma * math.sqrt(anomaly.magnitude**2 - 1.0)
            column[rows] += self._rng.normal(0.0, extra, rows.stop - rows.start)
        elif kind == "energy_surge":
            column[rows] *= anomaly.magnitude
