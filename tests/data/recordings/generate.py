"""Writes the labelled recording beside it: four boilers, one hour each at 10 s, three faults.

boiler-01: temperature spike (+15 °C, 2 rows); boiler-02: temperature stuck at one exact value
(40 rows); boiler-03: power level shift (+6 kW, 60 rows, the energy register following it);
boiler-04: no fault. The label column is 1 on the faulty rows. Seeded: running it again writes
the same files (``python tests/data/recordings/generate.py``).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
ROWS = 360
INTERVAL_S = 10
START = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)
FAULTS = {
    "boiler-01": ("spike", 200, 2),
    "boiler-02": ("stuck", 150, 40),
    "boiler-03": ("shift", 220, 60),
    "boiler-04": None,
}


def boiler(name: str, number: int, rng: np.random.Generator) -> list[dict[str, object]]:
    t = np.arange(ROWS) * INTERVAL_S
    phase = rng.uniform(0, 2 * np.pi)
    temperature = 65 + 3 * np.sin(2 * np.pi * t / 1800 + phase) + rng.normal(0, 0.3, ROWS)
    power = 12_000 + 1_500 * np.sin(2 * np.pi * t / 1800 + phase) + rng.normal(0, 200, ROWS)
    label = np.zeros(ROWS, dtype=int)
    fault = FAULTS[name]
    if fault is not None:
        kind, start, length = fault
        rows = slice(start, start + length)
        if kind == "spike":
            temperature[rows] += 15.0
        elif kind == "stuck":
            temperature[rows] = temperature[start]
        else:
            power[rows] += 6_000.0
        label[rows] = 1
    energy = 1_000.0 * number + np.cumsum(power * INTERVAL_S / 3.6e6)
    return [
        {
            "timestamp": (START + timedelta(seconds=int(t[i]))).isoformat().replace("+00:00", "Z"),
            "seq": i,
            "lat": round(48.85 + number / 100, 4),
            "lon": round(2.35 + number / 100, 4),
            "temperature": f"{temperature[i]:.2f}",
            "power": f"{power[i]:.1f}",
            "energy": f"{energy[i]:.4f}",
            "label": label[i],
        }
        for i in range(ROWS)
    ]


def main() -> None:
    rng = np.random.default_rng(11)
    for number, name in enumerate(FAULTS, 1):
        rows = boiler(name, number, rng)
        with (HERE / f"{name}.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
