"""The simulated fleet as a stream: readings in emission order, with ground truth attached.

This is the Kafka-free core used by the live simulator, the tests and offline evaluation. It runs on
a simulated clock (slot ``k`` is at ``start + k/rate``), so a given seed, fleet size and rate always
give the same readings and anomalies, however fast the stream is consumed.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np

from workbench.schema import Reading
from workbench.simulator.anomalies import Anomaly, Injector, Truth
from workbench.simulator.fleet import BOUNDS, Fleet
from workbench.simulator.schedule import Schedule

DEFAULT_ANOMALY_RATE = 0.03
"""Per device per minute: ~2–3 anomalies a minute across 100 devices."""
MAX_DEVICES = 1_000_000
MAX_RATE = 1_000_000.0
BLOCK_READINGS = 4096
"""Readings computed per numpy pass: large enough to amortise numpy's per-call overhead."""

Emission = tuple[float, Reading, tuple[Truth, ...]]
"""(seconds since the start on the simulated clock, the reading, truth records due after it)."""


def _is_whole(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_number(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def validate(
    devices: int,
    rate: float,
    anomaly_rate: float,
    count: int | None = None,
    duration_s: float | None = None,
) -> None:
    """Raise ValueError naming the first argument out of range and what is allowed."""
    if not _is_whole(devices) or not 1 <= devices <= MAX_DEVICES:
        raise ValueError(
            f"devices must be a whole number from 1 to {MAX_DEVICES:,}, got {devices!r}"
        )
    if not _is_number(rate) or not 0 < rate <= MAX_RATE:
        raise ValueError(
            f"rate must be readings per second, above 0 and at most {MAX_RATE:,.0f}, got {rate!r}"
        )
    if not _is_number(anomaly_rate) or not 0.0 <= anomaly_rate <= 1.0:
        raise ValueError(
            "anomaly_rate is a probability per device per minute and must be from 0 to 1, "
            f"got {anomaly_rate!r}"
        )
    if count is not None and duration_s is not None:
        raise ValueError("give either a duration or a count of readings, not both")
    if count is not None and (not _is_whole(count) or count < 1):
        raise ValueError(f"count must be a whole number of readings, at least 1, got {count!r}")
    if duration_s is not None and (not _is_number(duration_s) or not 0 < duration_s < math.inf):
        raise ValueError(f"duration must be a number of seconds above 0, got {duration_s!r}")


class Simulation:
    """A seeded fleet with anomalies, streamed reading by reading on a simulated clock.

    Iterate :meth:`emissions` (once), then call :meth:`close` for the truth of anomalies still
    running at the last reading taken.
    """

    def __init__(
        self,
        devices: int,
        rate: float,
        *,
        anomaly_rate: float = DEFAULT_ANOMALY_RATE,
        seed: int | None = None,
        start: datetime | None = None,
    ) -> None:
        validate(devices, rate, anomaly_rate)
        start = datetime.now(UTC) if start is None else start
        if start.tzinfo is None:
            raise ValueError(f"start must be a timezone-aware (UTC) time, got naive {start}")
        self.schedule = Schedule(devices, float(rate), start.astimezone(UTC))
        fleet_seed, anomaly_seed = np.random.SeedSequence(seed).spawn(2)
        self.fleet = Fleet(devices, fleet_seed)
        run_id = f"{self.schedule.start:%Y%m%dT%H%M%S}"
        self._injector = Injector(self.fleet, self.schedule, anomaly_rate, anomaly_seed, run_id)
        self._waiting: dict[str, Anomaly] = {}
        """Anomalies that have ended but whose truth has not been handed out yet."""
        self._last = -1
        """The slot of the last reading taken (-1: none yet)."""

    def emissions(
        self, count: int | None = None, until_s: float | None = None
    ) -> Iterator[Emission]:
        """Readings in slot order, each with the truth of anomalies that ended by it.

        Stops after ``count`` readings or before the first one at ``until_s`` simulated seconds.
        A reading counts as taken once the next one is asked for (or the stream ends), so a
        consumer that stops early leaves the truth attached to an unsent reading for :meth:`close`.
        """
        carry: list[Anomaly] = []
        left = math.inf if count is None else count
        for j0, rounds, d0, d1 in self._blocks():
            slots, offsets, readings = self._block(j0, rounds, d0, d1)
            ended, self._injector.ended = self._injector.ended, []
            self._waiting.update((a.anomaly_id, a) for a in ended)
            attached: list[tuple[Truth, ...]] = [()] * len(readings)
            pending, carry = [*carry, *ended], []
            ends = [self.schedule.slot(a.device, a.last) for a in pending]
            for anomaly, i in zip(pending, np.searchsorted(slots, ends).tolist(), strict=True):
                if i < len(readings):
                    attached[i] += (self._injector.truth(anomaly),)
                else:
                    carry.append(anomaly)
            n = len(readings)
            if until_s is not None:
                n = int(np.searchsorted(offsets, until_s))
            n = int(min(n, left))
            for i, slot in enumerate(slots[:n].tolist()):
                truths = attached[i]
                yield offsets[i], readings[i], truths
                self._last = slot
                for truth in truths:
                    del self._waiting[truth.anomaly_id]
            left -= n
            if n < len(readings) or not left:
                return

    def close(self) -> list[Truth]:
        """Truth for every anomaly begun but not reported by the last reading taken, cut there."""
        last, n = self._last, self.schedule.devices
        truths = [
            self._injector.truth(a, until=(last - a.device) // n)
            for a in self._unreported()
            if self.schedule.slot(a.device, a.first) <= last
        ]
        self._waiting.clear()
        self._injector.ended.clear()
        self._injector.running.clear()
        return sorted(truths, key=lambda t: (t.start, t.anomaly_id))

    @property
    def injected(self) -> int:
        """Anomalies begun up to the last reading taken."""
        ahead = sum(self.schedule.slot(a.device, a.first) > self._last for a in self._unreported())
        return self._injector.started - ahead

    def _unreported(self) -> Iterator[Anomaly]:
        injector = self._injector
        return itertools.chain(self._waiting.values(), injector.ended, injector.running.values())

    def _blocks(self) -> Iterator[tuple[int, int, int, int]]:
        """(first round, rounds, first device, end device) of successive blocks, in slot order."""
        n = self.schedule.devices
        if n >= BLOCK_READINGS:
            for j in itertools.count():
                for d0 in range(0, n, BLOCK_READINGS):
                    yield j, 1, d0, min(n, d0 + BLOCK_READINGS)
        else:
            rounds = BLOCK_READINGS // n
            for j0 in itertools.count(0, rounds):
                yield j0, rounds, 0, n

    def _block(
        self, j0: int, rounds: int, d0: int, d1: int
    ) -> tuple[np.ndarray, list[float], list[Reading]]:
        """One block's sent slots, their offsets from the start (s), and its readings."""
        schedule, fleet = self.schedule, self.fleet
        slots = np.arange(j0, j0 + rounds)[:, None] * schedule.devices + np.arange(d0, d1)
        offsets_us = schedule.offset_us(slots)
        values = fleet.clean((schedule.start_us + offsets_us) / 1e6, offsets_us / 1e6, d0, d1)
        sent = self._injector.step(values, j0, d0)
        for metric, array in values.items():
            np.clip(array, *BOUNDS[metric], out=array)
        values["energy"] = fleet.integrate(values["power"], d0, d1, schedule.interval_s)
        readings = fleet.readings(values, offsets_us, schedule, j0, d0, sent)
        kept = np.flatnonzero(sent)
        return slots.ravel()[kept], (offsets_us.ravel()[kept] / 1e6).tolist(), readings


def simulate(
    devices: int,
    rate: float,
    count: int,
    *,
    anomaly_rate: float = DEFAULT_ANOMALY_RATE,
    seed: int | None = None,
    start: datetime | None = None,
) -> Iterator[tuple[Reading, list[Truth]]]:
    """``count`` readings without Kafka or sleeping, each with the truth records due after it.

    The last reading also carries the truth of anomalies still running, cut at its time.
    """
    validate(devices, rate, anomaly_rate, count=count)
    simulation = Simulation(devices, rate, anomaly_rate=anomaly_rate, seed=seed, start=start)

    def stream() -> Iterator[tuple[Reading, list[Truth]]]:
        previous: tuple[Reading, list[Truth]] | None = None
        for _, reading, truths in simulation.emissions(count=count):
            if previous is not None:
                yield previous
            previous = reading, list(truths)
        if previous is not None:
            yield previous[0], previous[1] + simulation.close()

    return stream()
