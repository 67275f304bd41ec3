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

from collections.abc import Iterable, Sequence

import msgspec
import numpy as np

from workbench.models.ensemble import EnsembleDetector

Layout = list[tuple[str, str, str, tuple[int, ...]]]
"""Where each state array lies in a device's bytes: (component, field, dtype, shape), in order."""


class _DeviceState(msgspec.Struct, array_like=True):
    device_type: str
    layout: msgspec.Raw
    """The encoded :data:`Layout` (the same bytes for every device of a checkpoint)."""
    data: bytes


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_DeviceState).decode
_decode_layout = msgspec.msgpack.Decoder(Layout).decode
_layouts: dict[bytes, Layout] = {}


def take(ensemble: EnsembleDetector, device_type: str, device_id: str) -> bytes | None:
    """The device's state in every component, encoded; None for a device never seen."""
    return take_many(ensemble, device_type, [device_id])[0]


def take_many(
    ensemble: EnsembleDetector, device_type: str, device_ids: Sequence[str]
) -> list[bytes | None]:
    """:func:`take` for many devices of one type at once: each component's rows are copied
    in one step, and devices held by the same components share one layout."""
    out: list[bytes | None] = [None] * len(device_ids)
    index = ensemble.fleet.index(device_type)
    get = index.row_of.get
    rows = np.fromiter((get(d, -1) for d in device_ids), dtype=np.int64, count=len(device_ids))
    known = np.flatnonzero(rows >= 0)
    if not known.size:
        return out
    held_rows = rows[known]
    born = index.born[held_rows]
    parts = []
    for name, detector in ensemble.components.items():
        arrays, held = detector.export_rows(device_type, held_rows, born)
        if held.any():
            parts.append((name, arrays, held, np.cumsum(held) - 1))
    code = np.zeros(len(known), dtype=np.int64)
    for bit, (_name, _arrays, held, _at) in enumerate(parts):
        code |= held.astype(np.int64) << bit
    for shared in np.unique(code).tolist():
        sel = np.flatnonzero(code == shared)
        layout: Layout = []
        columns = []
        for bit, (name, arrays, _held, at) in enumerate(parts):
            if not shared >> bit & 1:
                continue
            for field, array in arrays.items():
                block = array[at[sel]]
                layout.append((name, field, array.dtype.str, array.shape[1:]))
                width = block.nbytes // len(sel)
                columns.append(np.ascontiguousarray(block).view(np.uint8).reshape(len(sel), width))
        raw = msgspec.Raw(_encode(layout))
        matrix = np.concatenate(columns, axis=1) if columns else np.zeros((len(sel), 0), np.uint8)
        for device, data in zip(known[sel].tolist(), matrix, strict=True):
            out[device] = _encode(_DeviceState(device_type, raw, data.tobytes()))
    return out


def put(ensemble: EnsembleDetector, device_id: str, blob: bytes) -> bool:
    """Restore a device from :func:`take`'s bytes; False if any component started it cold."""
    return put_many(ensemble, [(device_id, blob)]) == 1


def put_many(ensemble: EnsembleDetector, states: Iterable[tuple[str, bytes]]) -> int:
    """Restore devices from :func:`take_many`'s bytes, those sharing a layout in one step;
    how many came back warm. A device starts cold in a component this ensemble lacks or keeps
    with other shapes, and altogether when its bytes are not in this format."""
    groups: dict[tuple[str, bytes], tuple[list[str], list[bytes]]] = {}
    for device_id, blob in states:
        try:
            state = _decode(blob)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        ids, data = groups.setdefault((state.device_type, bytes(state.layout)), ([], []))
        ids.append(device_id)
        data.append(state.data)
    warm = 0
    for (device_type, raw), (ids, data) in groups.items():
        try:
            layout = _layout(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
        width = sum(np.dtype(d).itemsize * int(np.prod(s, dtype=np.int64)) for _, _, d, s in layout)
        fits = [len(d) == width for d in data]
        ids = [i for i, ok in zip(ids, fits, strict=True) if ok]
        if not ids:
            continue
        whole = b"".join(d for d, ok in zip(data, fits, strict=True) if ok)
        matrix = np.frombuffer(whole, np.uint8).reshape(len(ids), width)
        index = ensemble.fleet.index(device_type)
        index.forget(ids)
        rows = index.rows(ids)
        arrays: dict[str, dict[str, np.ndarray]] = {}
        offset = 0
        for name, field, dtype, shape in layout:
            kind = np.dtype(dtype)
            size = kind.itemsize * int(np.prod(shape, dtype=np.int64))
            block = np.ascontiguousarray(matrix[:, offset : offset + size])
            arrays.setdefault(name, {})[field] = block.view(kind).reshape(len(ids), *shape)
            offset += size
        all_warm = True
        for name, values in arrays.items():
            detector = ensemble.components.get(name)
            all_warm &= detector is not None and detector.import_rows(device_type, rows, values)
        warm += len(ids) if all_warm else 0
    return warm


def _layout(raw: bytes) -> Layout:
    layout = _layouts.get(raw)
    if layout is None:
        if len(_layouts) > 256:  # layouts are few (one per set of components): never grows
            _layouts.clear()
        layout = _layouts[raw] = [(c, f, d, tuple(s)) for c, f, d, s in _decode_layout(raw)]
    return layout


def forget(ensemble: EnsembleDetector, devices: Iterable[tuple[str, str]]) -> None:
    """Drop (device type, device id) pairs from every component (their partition moved on)."""
    by_type: dict[str, list[str]] = {}
    for device_type, device_id in devices:
        by_type.setdefault(device_type, []).append(device_id)
    for device_type, ids in by_type.items():
        ensemble.fleet.index(device_type).forget(ids)
