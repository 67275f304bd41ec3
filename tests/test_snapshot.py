"""Detector state taken from one ensemble and put into another: a moved partition resumes warm."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from workbench.models import snapshot
from workbench.models.ensemble import EnsembleDetector
from workbench.simulator import simulate


@pytest.fixture(scope="module")
def trained() -> tuple[EnsembleDetector, dict[str, list[str]], list]:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    readings = [r for r, _truths in simulate(300, 300.0, 9_000, seed=5, start=start)]
    ensemble = EnsembleDetector()
    for i in range(0, 6_000, 1_000):
        ensemble.process_batch(readings[i : i + 1_000])
    devices: dict[str, list[str]] = {}
    for r in readings[:6_000]:
        devices.setdefault(r.device_type, [])
        if r.device_id not in devices[r.device_type]:
            devices[r.device_type].append(r.device_id)
    return ensemble, devices, readings[6_000:]


def _scores(ensemble: EnsembleDetector, readings: list) -> np.ndarray:
    return np.array([ensemble.score_one(r) for r in readings])


def test_many_devices_come_back_as_they_were(trained) -> None:
    ensemble, devices, later = trained
    blobs = {t: snapshot.take_many(ensemble, t, ids) for t, ids in devices.items()}
    for t, ids in devices.items():  # the batch form gives what one device at a time gives
        assert blobs[t][:5] == [snapshot.take(ensemble, t, d) for d in ids[:5]]
    restored = EnsembleDetector()
    items = [(d, b) for t, ids in devices.items() for d, b in zip(ids, blobs[t], strict=True)]
    assert snapshot.put_many(restored, items) == len(items) == 300
    assert {t: snapshot.take_many(restored, t, ids) for t, ids in devices.items()} == blobs
    sample = later[:200]
    assert np.allclose(_scores(restored, sample), _scores(ensemble, sample))
    assert not np.allclose(_scores(EnsembleDetector(), sample), _scores(ensemble, sample))


def test_a_device_never_seen_has_no_state(trained) -> None:
    ensemble, devices, _later = trained
    kind = next(iter(devices))
    assert snapshot.take_many(ensemble, kind, ["nobody", devices[kind][0]])[0] is None


def test_state_of_other_shapes_or_another_format_starts_cold(trained) -> None:
    ensemble, devices, _later = trained
    kind, ids = next(iter(devices.items()))
    blobs = snapshot.take_many(ensemble, kind, ids[:10])
    other = EnsembleDetector(window_size=50)
    assert snapshot.put_many(other, list(zip(ids, blobs, strict=False))) == 0
    fresh = EnsembleDetector()
    garbage = [(ids[0], b"\x93not state"), (ids[1], blobs[1][:-3]), (ids[2], blobs[2])]
    assert snapshot.put_many(fresh, garbage) == 1
