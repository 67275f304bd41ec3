"""All detectors as one: a single calibrated score per reading and the most specific explanation.

Every component scores on the same scale (0.1 at its own trigger level), so the ensemble score is
the largest component score; the finding reported names the most specific kind any component saw
in that reading (a named pattern beats a spike, a spike beats a model's 'outlier'). Each component
can be switched off at run time (``use_…`` parameters: the dashboard's toggles).

The fleet models (Isolation Forest, DBSCAN) score on a worker thread while the other components
score on the caller's (their numpy and scikit-learn work releases the GIL), and all components
share one device index, so a batch's rows and rounds are looked up once.
:meth:`EnsembleDetector.silent_findings` reports devices that have gone silent.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from workbench.models.base import Finding, ParamsMixin, check_range
from workbench.models.batch import Columns, columnar
from workbench.models.counter import CounterDetector
from workbench.models.density import DensityDetector
from workbench.models.detector import BASE_SCORE, DEVICE_LIMIT, MAX_DEVICES, Detector
from workbench.models.forest import FleetModelDetector, ForestDetector
from workbench.models.novelty import NoveltyDetector
from workbench.models.patterns import (
    DropoutDetector,
    LocationJumpDetector,
    NoiseBurstDetector,
    ShiftDetector,
    StuckDetector,
)
from workbench.models.state import Fleet
from workbench.models.statistical import EwmaDetector, RobustZDetector
from workbench.schema import Reading

SPECIFICITY: tuple[str, ...] = (
    "location_jump",
    "dropout",
    "stuck",
    "counter_reset",
    "counter_surge",
    "noise_burst",
    "drift",
    "level_shift",
    "spike",
    "outlier",
)
"""Kinds from most to least specific: the first one seen in a reading names it."""
_RANK = {kind: i for i, kind in enumerate(SPECIFICITY)}
COMPONENTS: tuple[str, ...] = (
    "robust_z",
    "ewma",
    "stuck",
    "dropout",
    "shift",
    "noise",
    "location",
    "counter",
    "forest",
    "density",
    "novelty",
)
PARALLEL_MIN = 500
"""Batches of at least this many readings score the fleet models on the worker thread."""
_worker: ThreadPoolExecutor | None = None


def worker() -> ThreadPoolExecutor:
    """The thread that scores the fleet models beside the other components."""
    global _worker
    if _worker is None:
        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-score")
    return _worker


class EnsembleDetector(ParamsMixin):
    """Every detector on one batch; one finding per anomalous reading and metric.

    ``use_novelty`` (the NAB detector per device and metric) is off by default: on the simulator
    its range-scaled novelty flags ordinary sensor noise (thousands of false alerts) and its
    per-reading Python costs most of the throughput.
    """

    def __init__(
        self,
        anomaly_threshold: float = BASE_SCORE,
        window_size: int = 100,
        model_update_interval: int = 1000,
        use_robust_z: bool = True,
        use_ewma: bool = False,
        use_stuck: bool = True,
        use_dropout: bool = True,
        use_shift: bool = True,
        use_noise: bool = True,
        use_location: bool = True,
        use_counter: bool = True,
        use_forest: bool = True,
        use_density: bool = True,
        use_novelty: bool = False,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.anomaly_threshold = anomaly_threshold
        self.window_size = window_size
        self.model_update_interval = model_update_interval
        self.use_robust_z = use_robust_z
        self.use_ewma = use_ewma
        self.use_stuck = use_stuck
        self.use_dropout = use_dropout
        self.use_shift = use_shift
        self.use_noise = use_noise
        self.use_location = use_location
        self.use_counter = use_counter
        self.use_forest = use_forest
        self.use_density = use_density
        self.use_novelty = use_novelty
        self.max_devices = max_devices

    def _check_params(self) -> None:
        check_range("anomaly_threshold", self.anomaly_threshold, 0.0, 1.0)
        check_range("window_size", self.window_size, 10, 10_000, integer=True)
        check_range("model_update_interval", self.model_update_interval, 10, 10**7, integer=True)
        check_range("max_devices", self.max_devices, 1, DEVICE_LIMIT, integer=True)
        for name in COMPONENTS:
            value = getattr(self, f"use_{name}")
            if not isinstance(value, bool):
                raise ValueError(f"use_{name}={value!r}: it must be True or False")

    def _params_changed(self, names: set[str]) -> None:
        if names & {"window_size", "model_update_interval", "max_devices"} and hasattr(
            self, "_components"
        ):
            self._configure()

    @property
    def components(self) -> dict[str, Detector]:
        """The component detectors by name (built on first use, all of them, on or off)."""
        if not hasattr(self, "_components"):
            self._components: dict[str, Detector] = {
                "robust_z": RobustZDetector(),
                "ewma": EwmaDetector(),
                "stuck": StuckDetector(),
                "dropout": DropoutDetector(),
                "shift": ShiftDetector(),
                "noise": NoiseBurstDetector(),
                "location": LocationJumpDetector(),
                "counter": CounterDetector(),
                "forest": ForestDetector(),
                "density": DensityDetector(),
                "novelty": NoveltyDetector(),
            }
            self._configure()
        return self._components

    def _configure(self) -> None:
        """Pass the shared settings on to the components that take them."""
        shared = {
            "window_size": self.window_size,
            "model_update_interval": self.model_update_interval,
            "max_devices": self.max_devices,
        }
        fleet = getattr(self, "_fleet", None)
        if fleet is None or fleet.capacity != self.max_devices:
            fleet = self._fleet = Fleet(self.max_devices)
        for detector in self._components.values():
            names = detector.get_params()
            detector.set_params(**{k: v for k, v in shared.items() if k in names})
            detector.share(fleet)
        fleet_models = [d for d in self._components.values() if isinstance(d, FleetModelDetector)]
        for model in fleet_models[1:]:  # one EWMA normaliser for all the fleet models
            model.share_features(fleet_models[0])

    @property
    def fleet(self) -> Fleet:
        """The device indexes every component shares."""
        return self.components and self._fleet

    def enabled(self) -> list[Detector]:
        """The components switched on."""
        return [d for name, d in self.components.items() if getattr(self, f"use_{name}")]

    @property
    def state_bytes(self) -> int:
        """Per-device state held by all components."""
        return sum(d.state_bytes for d in self.components.values())

    def process_batch(self, readings: Sequence[Reading]) -> list[Finding]:
        """Score then learn a batch: one finding per reading and metric at or over the threshold."""
        return self.detect(columnar(readings))

    def detect(
        self, batches: dict[str, Columns], threshold: float | None = None, learn: bool = True
    ) -> list[Finding]:
        """Combined findings for columnar batches (components each see the whole batch)."""
        self._check_params()
        verdict = self.anomaly_threshold
        limit = verdict if threshold is None else threshold
        enabled = self.enabled()
        for device_type, cols in batches.items():  # rows and rounds once, before any thread
            cols.locate(self._fleet.index(device_type))
        models = [d for d in enabled if isinstance(d, FleetModelDetector)]
        pending = None
        if models and sum(len(c) for c in batches.values()) >= PARALLEL_MIN:
            pending = worker().submit(_run, models, batches, limit, learn)
            enabled = [d for d in enabled if d not in models]
        findings = _run(enabled, batches, limit, learn)
        if pending is not None:
            findings += pending.result()
        best: dict[tuple[str, datetime, int | None, str | None], Finding] = {}
        top: dict[tuple[str, datetime, int | None, str | None], float] = {}
        for f in findings:
            key = (f.device_id, f.ts, f.seq, f.metric)  # one reading (its seq may be None)
            held = best.get(key)
            if held is None:
                best[key], top[key] = f, f.score
                continue
            top[key] = max(top[key], f.score)
            if _preference(f, verdict) < _preference(held, verdict):
                best[key] = f
        return [_with_score(f, top[key]) for key, f in best.items()]

    def silent_findings(self, now: datetime) -> list[Finding]:
        """Dropout findings for devices silent at ``now`` for at least ``min_missing`` (2) of their
        usual intervals beyond one reading in flight; each silence is reported once.

        The readings' own path can only see a silence when the device speaks again, so a live
        pipeline calls this periodically (every few seconds, with the data time it has reached)
        to learn of devices that are still silent. Empty while the dropout component is off.
        """
        if not self.use_dropout:
            return []
        dropout = self.components["dropout"]
        assert isinstance(dropout, DropoutDetector)
        return dropout.silent_devices(now, once=True)

    def score_one(self, reading: Reading) -> float:
        """River-style: the combined score of one reading, without learning it."""
        findings = self.detect(columnar([reading]), 0.0, learn=False)
        return max((f.score for f in findings), default=0.0)

    def learn_one(self, reading: Reading) -> None:
        """River-style: learn one reading without scoring it."""
        self.detect(columnar([reading]), float("inf"))

    def wait(self) -> None:
        """Block until background model refits are in use."""
        for detector in self.components.values():
            wait = getattr(detector, "wait", None)
            if wait is not None:
                wait()


def _run(
    detectors: list[Detector], batches: dict[str, Columns], limit: float, learn: bool
) -> list[Finding]:
    return [f for d in detectors for f in d.detect(batches, limit, learn)]


def _preference(f: Finding, limit: float) -> tuple[bool, int, float]:
    """Sort key: findings over the threshold first, then the more specific, then the higher."""
    return f.score < limit, _RANK[f.kind], -f.score


def _with_score(f: Finding, score: float) -> Finding:
    if score == f.score:
        return f
    return Finding(
        f.device_id, f.device_type, f.kind, f.metric, score, f.ts, f.seq, f.observed,
        f.expected_low, f.expected_high, f"ensemble:{f.detector}",
    )  # fmt: skip
