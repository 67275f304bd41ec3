"""One device's learned state as bytes and back, so a partition that moves resumes warm.

A worker checkpoints the devices it has seen to a changelog topic; the worker that takes their
partition over restores them (Kafka Streams' state stores work the same way). The state is
every component's per-device table rows; the fleet models (Isolation Forest, DBSCAN per type)
are the worker's own and the ``novelty`` component's series are not kept.

>>> from datetime import UTC, datetime, timedelta
>>> from workbench.models.ensemble import EnsembleDetector
>>> from workbench.schema import Thermostat
>>> t0 = datetime(2024, 1, 1, tzinfo=UTC)
>>> old, new = EnsembleDetector(), EnsembleDetector()
>>> readings = [Thermostat(device_id="t-1", ts=t0 + timedelta(seconds=i), seq=i, lat=52.5,
...     lon=13.4, firmware="1.0", temperature=21.0 + i % 3 / 10, humidity=40.0 + i % 4,
...     power=5.0 + i % 2, energy=float(i)) for i in range(50)]
>>> findings = old.process_batch(readings)
>>> blob = take(old, "thermostat", "t-1")
>>> put(new, "t-1", blob)
True
>>> take(new, "thermostat", "t-1") == blob
True
>>> hot = msgspec.structs.replace(readings[-1], ts=t0 + timedelta(seconds=50), seq=50,
...     temperature=35.0)
>>> round(new.score_one(hot), 3) == round(old.score_one(hot), 3) > EnsembleDetector().score_one(hot)
True
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import numpy as np

from workbench.models.ensemble import EnsembleDetector


class _Array(msgspec.Struct, array_like=True):
    dtype: str
    shape: tuple[int, ...]
    data: bytes


class _DeviceState(msgspec.Struct, array_like=True):
    device_type: str
    components: dict[str, dict[str, _Array]]


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_DeviceState).decode


def take(ensemble: EnsembleDetector, device_type: str, device_id: str) -> bytes | None:
    """The device's state in every component, encoded; None for a device never seen."""
    index = ensemble.fleet.index(device_type)
    row = index.row_of.get(device_id)
    if row is None:
        return None
    born = int(index.born[row])
    components = {}
    for name, detector in ensemble.components.items():
        arrays = detector.export_row(device_type, row, born)
        if arrays is not None:
            components[name] = {
                k: _Array(a.dtype.str, a.shape, a.tobytes()) for k, a in arrays.items()
            }
    return _encode(_DeviceState(device_type, components))


def put(ensemble: EnsembleDetector, device_id: str, blob: bytes) -> bool:
    """Restore a device from :func:`take`'s bytes; False if any component started it cold."""
    state = _decode(blob)
    index = ensemble.fleet.index(state.device_type)
    index.forget([device_id])
    row = int(index.rows([device_id])[0])
    warm = True
    for name, arrays in state.components.items():
        detector = ensemble.components.get(name)
        if detector is None:
            warm = False
            continue
        values = {
            k: np.frombuffer(a.data, dtype=np.dtype(a.dtype)).reshape(a.shape)
            for k, a in arrays.items()
        }
        warm &= detector.import_row(state.device_type, row, values)
    return warm


def forget(ensemble: EnsembleDetector, devices: Iterable[tuple[str, str]]) -> None:
    """Drop (device type, device id) pairs from every component (their partition moved on)."""
    by_type: dict[str, list[str]] = {}
    for device_type, device_id in devices:
        by_type.setdefault(device_type, []).append(device_id)
    for device_type, ids in by_type.items():
        ensemble.fleet.index(device_type).forget(ids)
