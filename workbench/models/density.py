"""DBSCAN over recent readings of a device type: a reading in no dense cluster is anomalous.

DBSCAN is fitted (in the background, like the forest) on a bounded window of standardised
per-device residual features; a new reading belongs to a cluster when it lies within ``eps`` of a
core sample (DBSCAN's own rule for border points), so its score grows with the distance to the
nearest core sample, found with a k-d tree in one vectorised query per batch.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import KDTree

from workbench.models.base import check_range
from workbench.models.detector import BASE_SCORE, MAX_DEVICES
from workbench.models.forest import Fitted, FleetModelDetector

MAX_CORE = 1024
"""Core samples kept for scoring (a random subset beyond this: queries stay fast)."""
BRUTE_ROWS = 64
"""Batches up to this many rows measure their distances to every core sample directly: a
k-d tree query's fixed cost is most of a small batch's."""


class DensityDetector(FleetModelDetector):
    """Distance from the dense clusters DBSCAN finds in the recent fleet."""

    name = "density"

    def __init__(
        self,
        window_size: int = 100,
        model_update_interval: int = 1000,
        train_size: int = 2048,
        eps: float = 1.0,
        min_samples: int = 10,
        margin: float = 4.0,
        threshold: float = BASE_SCORE,
        min_history: int = 20,
        background: bool = True,
        max_devices: int = MAX_DEVICES,
    ) -> None:
        super().__init__(
            window_size, model_update_interval, train_size, margin, threshold, min_history,
            background, max_devices,
        )  # fmt: skip
        self.eps = eps
        self.min_samples = min_samples

    def _check_params(self) -> None:
        super()._check_params()
        check_range("eps", self.eps, 0.01, 100.0)
        check_range("min_samples", self.min_samples, 2, 1000, integer=True)

    def _fit(self, rows: np.ndarray) -> Fitted:
        scale = np.maximum(rows.std(axis=0), 1e-6)
        found = DBSCAN(eps=self.eps, min_samples=self.min_samples).fit(rows / scale)
        core = found.components_
        if len(core) == 0:
            core = np.zeros((1, rows.shape[1]))
        if len(core) > MAX_CORE:
            core = core[np.random.default_rng(0).choice(len(core), MAX_CORE, replace=False)]
        return Fitted((KDTree(core), scale, core, (core**2).sum(axis=1)), self.eps, self.eps)

    def _raw_scores(self, fitted: Fitted, features: np.ndarray) -> np.ndarray:
        tree, scale, core, core_sq = fitted.model
        x = features / scale
        if len(x) > BRUTE_ROWS:
            distance, _ = tree.query(x, k=1)
            return distance[:, 0]
        squared = (x**2).sum(axis=1)[:, None] - 2.0 * (x @ core.T) + core_sq
        return np.sqrt(np.maximum(squared.min(axis=1), 0.0))
