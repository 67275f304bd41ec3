"""Anomaly detectors for device readings: one interface (scikit-learn params, River online API,
vectorised ``process_batch``), bounded per-device state, and an ensemble behind the live API."""

from workbench.models.base import Finding
from workbench.models.batch import columnar
from workbench.models.counter import CounterDetector
from workbench.models.density import DensityDetector
from workbench.models.ensemble import EnsembleDetector
from workbench.models.explain import explain
from workbench.models.forest import ForestDetector
from workbench.models.live import DetectionResult, LiveAnomalyDetector
from workbench.models.novelty import NoveltyDetector
from workbench.models.patterns import (
    DropoutDetector,
    LocationJumpDetector,
    NoiseBurstDetector,
    ShiftDetector,
    StuckDetector,
)
from workbench.models.statistical import EwmaDetector, RobustZDetector

__all__ = [
    "CounterDetector",
    "DensityDetector",
    "DetectionResult",
    "DropoutDetector",
    "EnsembleDetector",
    "EwmaDetector",
    "Finding",
    "ForestDetector",
    "LiveAnomalyDetector",
    "LocationJumpDetector",
    "NoiseBurstDetector",
    "NoveltyDetector",
    "RobustZDetector",
    "ShiftDetector",
    "StuckDetector",
    "columnar",
    "explain",
]
