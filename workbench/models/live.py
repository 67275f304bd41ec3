"""The original spec's entry point: one reading in, a score, a verdict and a reason in words out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workbench.models.base import Finding, ParamsMixin
from workbench.models.batch import columnar
from workbench.models.detector import BASE_SCORE, MAX_DEVICES
from workbench.models.ensemble import EnsembleDetector
from workbench.models.explain import explain
from workbench.schema import Reading


@dataclass(frozen=True, slots=True)
class DetectionResult:
    """The verdict on one reading."""

    score: float
    is_anomaly: bool
    reason: str
    finding: Finding | None = None


class LiveAnomalyDetector(ParamsMixin):
    """The ensemble behind the spec's API: ``process_data_point`` per reading, or in batches."""

    def __init__(
        self,
        window_size: int = 100,
        anomaly_threshold: float = BASE_SCORE,
        model_update_interval: int = 1000,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.anomaly_threshold = anomaly_threshold
        self.model_update_interval = model_update_interval
        self.max_devices = max_devices

    @property
    def ensemble(self) -> EnsembleDetector:
        """The detector doing the work (its ``use_…`` toggles switch components)."""
        if not hasattr(self, "_ensemble"):
            self._ensemble = EnsembleDetector(**self.get_params())
        return self._ensemble

    def _check_params(self) -> None:
        self.ensemble.set_params(**self.get_params())

    def process_data_point(self, reading: Reading) -> DetectionResult:
        """Score, then learn, one reading."""
        findings = self.ensemble.detect(columnar([reading]), 0.0)
        if not findings:
            return DetectionResult(0.0, False, "normal: no detector has seen enough of it yet")
        finding = findings[0]
        anomalous = finding.score >= self.anomaly_threshold
        return DetectionResult(
            finding.score,
            anomalous,
            f"{explain(finding)} (score {finding.score:.2f})" if anomalous else "normal",
            finding,
        )

    def process_batch(self, readings: Sequence[Reading]) -> list[Finding]:
        """Score then learn a batch; findings for the anomalous readings."""
        return self.ensemble.process_batch(readings)
