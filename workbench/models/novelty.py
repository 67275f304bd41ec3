"""The NAB detector in the fleet: one :class:`UnivariateDetector` per device and metric.

Each device's metrics are scored exactly as the NAB benchmark scores a series (distance to the
nearest remembered reading as a share of the series' range), with a memory of ``window_size``
readings so that a fleet's state stays small; devices are capped like every other detector's.
It works one reading at a time in Python, so it costs far more per reading than the vectorised
detectors (see ``workbench bench detect``).
"""

from __future__ import annotations

import numpy as np

from workbench.models.base import check_range
from workbench.models.batch import Columns
from workbench.models.detector import BASE_SCORE, MAX_DEVICES, Detector, Scores, calibrate
from workbench.models.state import DeviceTable, Field
from workbench.models.univariate import UnivariateDetector

ALERT = 0.5
""":class:`UnivariateDetector`'s own alert level (its output when novelty equals ``scale``)."""
VALUE_BYTES = 32
"""Approximate bytes per number a :class:`UnivariateDetector` holds (a float and its slot)."""


def rescore(nab: np.ndarray) -> np.ndarray:
    """Map NAB-style outputs (``ALERT`` at the trigger level) onto the detectors' common scale."""
    with np.errstate(divide="ignore"):
        ratio = np.log2(1.0 - np.minimum(nab, 1.0)) / np.log2(1.0 - ALERT)
    return calibrate(np.minimum(ratio, 1e6))


class NoveltyDetector(Detector):
    """Per device and metric, a reading far from every recent one relative to the range seen."""

    kind = "outlier"
    name = "novelty"

    def __init__(
        self,
        window_size: int = 100,
        scale: float = 0.015,
        min_history: int = 20,
        refractory: int = 10,
        threshold: float = BASE_SCORE,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.scale = scale
        self.min_history = min_history
        self.refractory = refractory
        self.threshold = threshold
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("window_size", self.window_size, 10, 100_000, integer=True)
        check_range("scale", self.scale, 1e-6, 10.0)
        check_range("min_history", self.min_history, 1, 100_000, integer=True)
        check_range("refractory", self.refractory, 0, 100_000, integer=True)

    def _structural(self) -> set[str]:
        return {"max_devices", "window_size", "scale", "min_history", "refractory"}

    def reset(self) -> None:
        super().reset()
        self._series: dict[str, list[list[UnivariateDetector] | None]] = {}

    def _fields(self, device_type: str) -> dict[str, Field]:
        return {"new": ((), True, np.bool_)}

    def _detectors(self, device_type: str) -> list[list[UnivariateDetector] | None]:
        series = self._series.setdefault(device_type, [])
        series.extend([None] * (self.fleet.index(device_type).allocated - len(series)))
        return series

    def _round(
        self, table: DeviceTable, rows: np.ndarray, cols: Columns, sel: np.ndarray, learn: bool
    ) -> Scores:
        x = cols.signals[sel]
        series = self._detectors(cols.device_type)
        new = table["new"][rows]
        for row in rows[new].tolist():  # a row given to another device starts afresh
            series[row] = [
                UnivariateDetector(
                    memory=self.window_size,
                    scale=self.scale,
                    warmup=self.min_history,
                    refractory=self.refractory,
                )
                for _ in range(x.shape[1])
            ]
        table["new"][rows] = False
        nab = np.empty(x.shape)
        for i, (row, values) in enumerate(zip(rows.tolist(), x.tolist(), strict=True)):
            for j, (detector, value) in enumerate(zip(series[row], values, strict=True)):  # type: ignore[arg-type]
                nab[i, j] = detector.score_learn_one(value) if learn else detector.score_one(value)
        best = np.argmax(nab, axis=1)
        observed = x[np.arange(len(best)), best]
        unknown = np.full(len(sel), np.nan)
        return Scores(
            rescore(nab[np.arange(len(best)), best]), best, observed, unknown, unknown, self.kind
        )

    @property
    def state_bytes(self) -> int:
        """Bytes of state held now, the detectors' numbers approximated at ``VALUE_BYTES``."""
        held = sum(
            d.state_size()
            for s in getattr(self, "_series", {}).values()
            for ds in s
            if ds
            for d in ds
        )
        return super().state_bytes + held * VALUE_BYTES
