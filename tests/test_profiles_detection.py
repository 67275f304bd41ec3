"""The live detectors on a fleet that only a profile file defines (pumps with 8 gauges, a water
meter's counter, a door switch; no location, no firmware): faults injected into its data are
found by kind, and nothing in the pipeline names a simulator metric.

A process runs on one set of profiles (WORKBENCH_PROFILES), so this runs in a child process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLANT = Path(__file__).parent / "data" / "profiles" / "plant.toml"

SCRIPT = r"""
import json
from datetime import UTC, datetime, timedelta

import numpy as np

from workbench.models.ensemble import EnsembleDetector
from workbench.models.explain import explain
from workbench.profiles.active import active

types = active().types
t0 = datetime(2026, 3, 1, tzinfo=UTC)
rng = np.random.default_rng(7)
readings = []
for i in range(400):
    for p in range(6):
        levels = {
            "inlet_pressure": (1.2, 0.02), "outlet_pressure": (6.5, 0.05), "flow": (120, 1.0),
            "vibration": (2.0, 0.05), "bearing_temperature": (60, 0.3), "motor_current": (48, 0.4),
            "motor_voltage": (400, 1.0), "speed": (2950, 5.0),
        }
        values = {k: mean + rng.normal(0, sd) for k, (mean, sd) in levels.items()}
        if p == 0 and i == 300:
            values["vibration"] = 25.0  # a bearing knock: one reading far off
        values = {k: round(float(v), 3) for k, v in values.items()}
        readings.append(types["pump"](device_id=f"P-{p}", ts=t0 + timedelta(seconds=10 * i),
                                      seq=i, **values))
    if i % 6 == 0:
        k = i // 6
        for m in range(3):
            step = 0.5 if not (m == 0 and 50 <= k < 56) else 2.5  # meter 0 surges 5×
            volume = 1000 + 0.5 * k + (2.0 * max(0, min(k, 56) - 50) if m == 0 else 0)
            readings.append(types["meter"](device_id=f"M-{m}", ts=t0 + timedelta(seconds=60 * k),
                                           seq=k, volume=round(volume, 3)))
    if i % 3 == 0:
        readings.append(types["door"](device_id="D-1", ts=t0 + timedelta(seconds=10 * i),
                                      seq=i // 3, open=(i // 3) % 40 == 0))
findings = EnsembleDetector().process_batch(readings)
print(json.dumps(sorted({(f.device_id, f.kind, f.metric or "") for f in findings})))
print(json.dumps([explain(f) for f in findings if f.kind == "counter_surge"][:1]))
"""


def test_faults_in_a_profile_only_fleet_are_found_by_kind() -> None:
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={**os.environ, "WORKBENCH_PROFILES": str(PLANT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    found = {tuple(f) for f in json.loads(lines[0])}
    assert ("P-0", "spike", "vibration") in found
    assert ("M-0", "counter_surge", "volume") in found
    assert not {f for f in found if f[0] in ("M-1", "M-2")}  # steady meters stay quiet
    assert "m³/h" in json.loads(lines[1])[0]
