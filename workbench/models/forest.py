"""Isolation Forest per device type over recent readings, retrained in the background.

Features are each reading's per-device standardised residuals (against an EWMA of that device), so
one model serves a whole device type however different its devices' levels are. Every
``model_update_interval`` readings of a type a new model is fitted on the last ``train_size``
feature rows in a worker thread while the stream goes on being scored by the current one; the new
model replaces it when ready. Scoring is one vectorised call per batch and device type (small
batches walk all trees at once in numpy: :class:`FlatForest`; the smallest walk every type's
trees at once: :class:`JoinedForests`). The fleet models of an ensemble share one EWMA
normaliser (:meth:`FleetModelDetector.share_features`).
"""

from __future__ import annotations

import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from workbench.models.base import Finding, check_range
from workbench.models.batch import SIGNALS, Columns
from workbench.models.detector import BASE_SCORE, MAX_DEVICES, Detector, Scores, calibrate
from workbench.models.state import Field
from workbench.models.statistical import EwmaState

_executor: ThreadPoolExecutor | None = None
_rest_until = 0.0
"""Monotonic time before which no background refit starts, for any model (caps the trainer)."""
TRAINER_SHARE = 0.2
"""Largest share of a CPU core background refits may take, all models together."""
FLAT_ROWS = 2000
"""Batches up to this many rows walk all trees at once (:class:`FlatForest`), larger ones go
tree by tree."""
JOIN_ROWS = 128
"""Batches up to this many rows (all device types together) walk their types' forests as one:
below it the per-level calls dominate, above it the larger gathers cost more than they save."""
FEATURE_CLIP = 100.0
"""Residuals are clipped to ±this many spreads (beyond it, more is not more informative)."""
_FEATURES = "residual features"
Features = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Per reading: clipped residuals, EWMA mean, spread (rows × signals), and whether its device is
past its warm-up."""


def trainer() -> ThreadPoolExecutor:
    """The worker thread that fits models off the stream (one, shared: training is rare)."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-train")
    return _executor


@dataclass
class Fitted:
    """A trained model with what its scores are calibrated against."""

    model: Any
    centre: float
    """Typical raw score on the training rows."""
    spread: float
    """Raw score distance from typical to the trigger level."""


@dataclass
class TypeModel:
    """Per device type: the training window of feature rows and the model in use."""

    rows: np.ndarray
    stored: int = 0
    since_fit: int = 0
    fitted: Fitted | None = None
    pending: Future | None = field(default=None, repr=False)


class FleetModelDetector(Detector):
    """Base of fleet-level models: per-device residual features, background refits."""

    kind = "outlier"

    def __init__(
        self,
        window_size: int = 100,
        model_update_interval: int = 1000,
        train_size: int = 2048,
        margin: float = 2.0,
        threshold: float = BASE_SCORE,
        min_history: int = 20,
        background: bool = True,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        self.window_size = window_size
        self.model_update_interval = model_update_interval
        self.train_size = train_size
        self.margin = margin
        self.threshold = threshold
        self.min_history = min_history
        self.background = background
        self.max_devices = max_devices

    def _check_params(self) -> None:
        super()._check_params()
        check_range("window_size", self.window_size, 2, 100_000, integer=True)
        check_range("model_update_interval", self.model_update_interval, 10, 10**7, integer=True)
        check_range("train_size", self.train_size, 64, 100_000, integer=True)
        check_range("margin", self.margin, 0.1, 100.0)
        check_range("min_history", self.min_history, 1, 100_000, integer=True)
        if not isinstance(self.background, bool):
            raise ValueError(f"background={self.background!r}: it must be True or False")

    def _structural(self) -> set[str]:
        return {"max_devices", "train_size"}

    def reset(self) -> None:
        super().reset()
        self._models: dict[str, TypeModel] = {}

    def _fields(self, device_type: str) -> dict[str, Field]:
        return EwmaState.fields(len(SIGNALS[device_type]))

    def _fit(self, rows: np.ndarray) -> Fitted:
        """Fit a model on feature rows (runs in the worker thread)."""
        raise NotImplementedError

    def _raw_scores(self, fitted: Fitted, features: np.ndarray) -> np.ndarray:
        """Raw anomaly scores, larger is more anomalous."""
        raise NotImplementedError

    def _model(self, device_type: str) -> TypeModel:
        self._table(device_type)  # makes sure state exists (and _models with it)
        model = self._models.get(device_type)
        if model is None:
            width = len(SIGNALS[device_type])
            model = self._models[device_type] = TypeModel(np.zeros((self.train_size, width)))
        return model

    def detect(
        self, batches: dict[str, Columns], threshold: float | None = None, learn: bool = True
    ) -> list[Finding]:
        """Features in rounds (per-device state), then one model call per device type."""
        self._check_params()
        limit = self.threshold if threshold is None else threshold
        out: list[Finding] = []
        scored = []
        for device_type, cols in batches.items():
            model = self._model(device_type)
            features, mean, sd, ready = self._features_of(cols, learn)
            if model.fitted is not None and ready.any():
                scored.append((device_type, cols, model.fitted, features, mean, sd, ready))
            if learn:
                self._keep(model, features[ready])
        raws = self._raw_scores_many([(f, x[ready]) for _, _, f, x, _, _, ready in scored])
        for (device_type, cols, fitted, features, mean, sd, ready), raw in zip(
            scored, raws, strict=True
        ):
            score = np.zeros(len(cols))
            score[ready] = calibrate((raw - fitted.centre) / (fitted.spread * self.margin))
            best = np.argmax(np.abs(features), axis=1)
            pick = np.arange(len(cols)), best
            reach = 3.0 * sd[pick]
            x = cols.signals[pick]
            s = Scores(score, best, x, mean[pick] - reach, mean[pick] + reach, self.kind)
            hits = np.flatnonzero(score >= limit)
            if hits.size:
                everything = np.arange(len(cols))
                out.extend(self._findings(cols, everything, s, hits, SIGNALS[device_type]))
        return out

    def _raw_scores_many(self, work: list[tuple[Fitted, np.ndarray]]) -> list[np.ndarray]:
        """:meth:`_raw_scores` for several device types' models and features."""
        return [self._raw_scores(fitted, features) for fitted, features in work]

    def share_features(self, source: FleetModelDetector) -> None:
        """Take the residual features of ``source`` (another fleet model of one ensemble) while
        its window and warm-up are ours, instead of keeping the same per-device state twice."""
        self._feature_source = source

    def _features_of(self, cols: Columns, learn: bool) -> Features:
        """This batch's features: the ones the feature source already worked out and we have
        not used yet, else worked out (and learned) now in the source's state."""
        source = getattr(self, "_feature_source", self)
        if (source.window_size, source.min_history) != (self.window_size, self.min_history):
            source = self
        key = (_FEATURES, id(source), learn)
        held = cols.derived.get(key)
        if held is not None and id(self) not in held[1]:
            held[1].add(id(self))
            return held[0]
        found = source._residual_features(cols, learn)
        cols.derived[key] = (found, {id(self)})
        return found

    def _residual_features(self, cols: Columns, learn: bool) -> Features:
        """(features, EWMA mean, spread, ready) per reading, round by round from our state."""
        table, rows, order = self._locate(cols)
        x = cols.signals
        features = np.zeros_like(x)
        mean, sd = np.zeros_like(x), np.zeros_like(x)
        ready = np.zeros(len(cols), dtype=bool)
        for sel in order:
            r = rows[sel]
            mean[sel], sd[sel], z = EwmaState.residuals(table, r, x[sel], cols.device_type)
            features[sel] = np.clip(z, -FEATURE_CLIP, FEATURE_CLIP)
            ready[sel] = table["n"][r] >= self.min_history
            if learn:
                EwmaState.learn(
                    table, r, x[sel], mean[sel], sd[sel], self.window_size, 3.0, self.min_history
                )
        return features, mean, sd, ready

    def _keep(self, model: TypeModel, features: np.ndarray) -> None:
        """Add feature rows to the training window; start a refit when one is due."""
        global _rest_until
        size = len(model.rows)
        for start in range(0, len(features), size):
            chunk = features[start : start + size]
            at = (model.stored + np.arange(len(chunk))) % size
            model.rows[at] = chunk
            model.stored += len(chunk)
        model.since_fit += len(features)
        if model.pending is not None and model.pending.done():
            model.fitted, model.pending = model.pending.result(), None
        due = model.since_fit >= self.model_update_interval or model.fitted is None
        if due and model.pending is None and model.stored >= min(size, 256):
            data = model.rows[: min(model.stored, size)].copy()
            model.since_fit = 0
            if not self.background:
                model.fitted = self._fit(data)
            elif model.fitted is None or time.monotonic() >= _rest_until:  # first fits at once
                _rest_until = math.inf  # then one refit at a time, all models together
                model.pending = trainer().submit(self._timed_fit, data)

    def _timed_fit(self, data: np.ndarray) -> Fitted:
        """Fit, then rest so that refits take at most TRAINER_SHARE of a core however fast the
        stream is (at 50,000 readings/s a refit every 1,000 readings could not keep up)."""
        global _rest_until
        began = time.monotonic()
        try:
            return self._fit(data)
        finally:
            done = time.monotonic()
            _rest_until = done + (done - began) * (1.0 / TRAINER_SHARE - 1.0)

    def wait(self) -> None:
        """Block until refits in progress are in use (tests, benchmarks)."""
        for model in getattr(self, "_models", {}).values():
            if model.pending is not None:
                model.fitted, model.pending = model.pending.result(), None


class ForestDetector(FleetModelDetector):
    """Isolation Forest per device type: readings easy to isolate from the recent fleet."""

    name = "forest"

    def __init__(
        self,
        window_size: int = 100,
        model_update_interval: int = 1000,
        train_size: int = 2048,
        n_estimators: int = 50,
        margin: float = 2.0,
        threshold: float = BASE_SCORE,
        min_history: int = 20,
        background: bool = True,
        random_state: int = 0,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        super().__init__(
            window_size, model_update_interval, train_size, margin, threshold, min_history,
            background, max_devices,
        )  # fmt: skip
        self.n_estimators = n_estimators
        self.random_state = random_state

    def _check_params(self) -> None:
        super()._check_params()
        check_range("n_estimators", self.n_estimators, 1, 1000, integer=True)

    def _fit(self, rows: np.ndarray) -> Fitted:
        model = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(256, len(rows)),
            random_state=self.random_state,
        ).fit(rows)
        flat = FlatForest(model)
        raw = flat.score(rows)
        centre = float(np.median(raw))
        return Fitted((model, flat), centre, max(float(np.quantile(raw, 0.999)) - centre, 1e-3))

    def _raw_scores(self, fitted: Fitted, features: np.ndarray) -> np.ndarray:
        return fitted.model[1].score(features)

    def _raw_scores_many(self, work: list[tuple[Fitted, np.ndarray]]) -> list[np.ndarray]:
        """Small batches of several device types walk all their forests together."""
        flats = [fitted.model[1] for fitted, _ in work]
        if len(work) < 2 or sum(len(x) for _, x in work) > JOIN_ROWS:
            return super()._raw_scores_many(work)
        joined = getattr(self, "_joined", None)
        if joined is None or not joined.holds(flats):  # a refit: join these and the newest
            newest = [m.fitted.model[1] for m in self._models.values() if m.fitted is not None]
            joined = self._joined = JoinedForests(list({id(f): f for f in flats + newest}.values()))
        return joined.score(flats, [x for _, x in work])


def path_length(n: np.ndarray | float) -> np.ndarray:
    """Average path length of an unsuccessful search in a binary search tree of ``n`` points."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 3.0)
    c = 2.0 * (np.log(safe - 1.0) + np.euler_gamma) - 2.0 * (safe - 1.0) / safe
    return np.where(n <= 1, 0.0, np.where(n == 2, 1.0, c))


class FlatForest:
    """A fitted Isolation Forest's trees as flat arrays, walked together by numpy.

    Gives exactly ``-score_samples`` without scikit-learn's per-tree calls, which dominate the
    cost of small batches. Larger ones (over ``FLAT_ROWS``) go tree by tree through the trees'
    own compiled ``apply``, without the input checks ``score_samples`` repeats for every tree
    and with the GIL released, so the ensemble's other components score meanwhile.
    """

    def __init__(self, model: IsolationForest) -> None:
        features, thresholds, children, values, roots = [], [], [], [], []
        offset, self.depth = 0, 0
        every = model.n_features_in_
        self.trees: list[tuple[Any, np.ndarray | None]] = []
        for tree, used in zip(model.estimators_, model.estimators_features_, strict=True):
            t = tree.tree_
            # scikit-learn hands a tree all columns when it uses them all
            self.trees.append((t, None if len(used) == every else np.asarray(used)))
            leaf = t.children_left < 0
            depth = t.compute_node_depths()
            here = offset + np.arange(t.node_count)
            self.depth = max(self.depth, int(depth.max()))
            features.append(np.where(leaf, 0, np.asarray(used)[np.maximum(t.feature, 0)]))
            thresholds.append(np.where(leaf, np.inf, t.threshold))  # a leaf loops on itself
            left = np.where(leaf, here, offset + t.children_left)
            right = np.where(leaf, here, offset + t.children_right)
            children.append(np.stack([left, right], axis=1).ravel())
            values.append(np.where(leaf, depth + path_length(t.n_node_samples) - 1.0, 0.0))
            roots.append(offset)
            offset += t.node_count
        self.feature = np.concatenate(features).astype(np.intp)
        self.threshold = np.concatenate(thresholds)
        self.children = np.concatenate(children).astype(np.intp)
        self.value = np.concatenate(values)
        self.roots = np.array(roots, dtype=np.intp)
        self.norm = len(roots) * float(path_length(model.max_samples_))

    def score(self, x: np.ndarray) -> np.ndarray:
        """``2 ** -(mean path length / c(max_samples))`` per row (``-score_samples``)."""
        if len(x) > FLAT_ROWS:
            return self._score_by_tree(x)
        n, width = x.shape
        node = np.repeat(self.roots[None], n, axis=0)
        leaves = _walk(self, [x], (np.arange(n) * width)[:, None], node)
        return 2.0 ** (-self.value[leaves].sum(axis=1) / self.norm)

    def _score_by_tree(self, x: np.ndarray) -> np.ndarray:
        x32 = np.ascontiguousarray(x, dtype=np.float32)
        total = np.zeros(len(x))
        for (tree, used), root in zip(self.trees, self.roots, strict=True):
            rows = x32 if used is None else np.ascontiguousarray(x32[:, used])
            total += self.value[root + tree.apply(rows)]
        return 2.0 ** (-total / self.norm)


class JoinedForests:
    """Several :class:`FlatForest` (one per device type, the same number of trees) walked as one,
    so a slow stream's small batch pays the per-level numpy calls once, not once per type."""

    def __init__(self, flats: list[FlatForest]) -> None:
        self.flats = flats
        self.at = {id(f): k for k, f in enumerate(flats)}
        starts = np.cumsum([0] + [len(f.threshold) for f in flats[:-1]])
        self.feature = np.concatenate([f.feature for f in flats])
        self.threshold = np.concatenate([f.threshold for f in flats])
        self.children = np.concatenate([f.children + s for f, s in zip(flats, starts, strict=True)])
        self.value = np.concatenate([f.value for f in flats])
        self.roots = [f.roots + s for f, s in zip(flats, starts, strict=True)]
        self.depth = max(f.depth for f in flats)
        self.same_size = len({len(r) for r in self.roots}) == 1

    def holds(self, flats: list[FlatForest]) -> bool:
        """Whether all of these forests are joined here."""
        return all(id(f) in self.at and self.flats[self.at[id(f)]] is f for f in flats)

    def score(self, flats: list[FlatForest], xs: list[np.ndarray]) -> list[np.ndarray]:
        """:meth:`FlatForest.score` of each forest (one of those joined) on its rows."""
        if not self.same_size:  # forests with different numbers of trees
            return [f.score(x) for f, x in zip(flats, xs, strict=True)]
        sizes = [len(x) for x in xs]
        starts = np.cumsum([0] + [x.size for x in xs[:-1]])
        base = np.concatenate(
            [s + np.arange(len(x)) * x.shape[1] for x, s in zip(xs, starts, strict=True)]
        )[:, None]
        node = np.concatenate(
            [
                np.repeat(self.roots[self.at[id(f)]][None], n, axis=0)
                for f, n in zip(flats, sizes, strict=True)
            ]
        )
        leaves = _walk(self, xs, base, node)
        norm = np.repeat([f.norm for f in flats], sizes)
        scores = 2.0 ** (-self.value[leaves].sum(axis=1) / norm)
        return np.split(scores, np.cumsum(sizes)[:-1])


def _walk(
    trees: FlatForest | JoinedForests, xs: list[np.ndarray], base: np.ndarray, node: np.ndarray
) -> np.ndarray:
    """The leaf each row reaches in each tree: rows of ``xs`` laid end to end, ``base`` the
    offset of each row's first value, ``node`` each row's roots (rows × trees)."""
    flat = np.concatenate([x.astype(np.float32).astype(np.float64).ravel() for x in xs])
    for _ in range(trees.depth):  # trees compare float32 inputs; a leaf loops on itself
        right = flat[base + trees.feature[node]] > trees.threshold[node]
        node = trees.children[2 * node + right]
    return node
