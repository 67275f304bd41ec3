"""The original spec's entry point: one reading in, a score, a verdict and a reason in words out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from workbench.models.base import Finding, ParamsMixin
from workbench.models.batch import columnar
from workbench.models.detector import BASE_SCORE, MAX_DEVICES
from workbench.models.ensemble import EnsembleDetector
from workbench.schema import UNITS, Reading


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
            finding.score, anomalous, explain(finding) if anomalous else "normal", finding
        )

    def process_batch(self, readings: Sequence[Reading]) -> list[Finding]:
        """Score then learn a batch; findings for the anomalous readings."""
        return self.ensemble.process_batch(readings)


_KIND_WORDS = {
    "spike": "sudden spike",
    "level_shift": "level shift",
    "drift": "drift",
    "stuck": "stuck sensor (same value repeated)",
    "noise_burst": "burst of noise",
    "energy_surge": "energy surge",
    "outlier": "unusual reading for its fleet",
}


def explain(f: Finding) -> str:
    """A finding in words: what, which metric, the value seen and the range expected."""
    if f.kind == "dropout":
        return f"{f.device_id}: silent, about {f.observed:.0f} readings missing before this one"
    if f.kind == "location_jump":
        return f"{f.device_id}: reported {f.observed:,.0f} km from its usual position"
    unit = UNITS.get(f.metric or "", "")
    text = f"{f.device_id}: {_KIND_WORDS.get(f.kind, f.kind)} in {f.metric}, {f.observed:g} {unit}"
    if f.expected_low is not None and f.expected_high is not None:
        text += f" (expected {f.expected_low:.4g} to {f.expected_high:.4g} {unit})"
    return text + f", score {f.score:.2f}"
