"""An online anomaly detector for one numeric metric: how far a reading lies from every recent one.

A reading is judged, before it is learnt, by its distance to the nearest of the last ``memory``
readings, as a share of the range of values seen so far (a one-nearest-neighbour novelty, as in
KNN-CAD, on single values). Dividing by the series' own range makes the novelty comparable from
one series to another, so one threshold suits every series: readings the series has (nearly)
produced before score about 0, a value outside everything recent (a spike, a level shift, a
drop to an unseen level) scores high. The output is ``1 - 2^(-novelty/scale)``: a novelty of
``scale`` (share of the range) scores 0.5, the alert level. After an alert the next
``refractory`` readings are damped so that one event alerts once. State is a ring of the last
``memory`` values, the same values sorted, and a few floats: memory does not grow with time.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from datetime import datetime

from workbench.models.base import ParamsMixin, check_range

_ALERT = 0.5
"""Output at which a reading counts as an alert (novelty equal to ``scale``)."""
_DAMPING = 0.5
"""Factor on the output during the refractory period after an alert: it stays below an alert."""


class UnivariateDetector(ParamsMixin):
    """Online detector for one metric: ``score_one``/``learn_one``, scores in [0, 1]."""

    def __init__(
        self,
        memory: int = 5000,
        scale: float = 0.015,
        warmup: int = 150,
        refractory: int = 100,
    ) -> None:
        self.memory = memory
        self.scale = scale
        self.warmup = warmup
        self.refractory = refractory
        self._checked = False
        self.reset()

    # -- parameters ---------------------------------------------------------------------

    def _check_params(self) -> None:
        check_range("memory", self.memory, 10, 1_000_000, integer=True)
        check_range("scale", self.scale, 1e-6, 10)
        check_range("warmup", self.warmup, 1, 1_000_000, integer=True)
        check_range("refractory", self.refractory, 0, 1_000_000, integer=True)

    def _params_changed(self, names: set[str]) -> None:
        if "memory" in names:
            while len(self._ring) > self.memory:
                self._forget_oldest()

    def _ensure_checked(self) -> None:
        if not self._checked:
            self._check_params()
            self._checked = True

    def reset(self) -> None:
        """Forget everything learnt (parameters stay)."""
        self.n = 0
        self._ring: deque[float] = deque()
        self._sorted: list[float] = []
        self._low = math.inf
        self._high = -math.inf
        self._quiet = 0
        """Readings left in the refractory period after the last alert."""

    def state_size(self) -> int:
        """Numbers held (constant once ``memory`` readings are in): for memory checks."""
        return len(self._ring) + len(self._sorted) + 4

    # -- scoring ------------------------------------------------------------------------

    def _novelty(self, x: float) -> float:
        """Distance from ``x`` to the nearest remembered reading, as a share of the range."""
        span = self._high - self._low
        if self.n < self.warmup or not span > 0:
            return 0.0
        values = self._sorted
        i = bisect.bisect_left(values, x)
        below = x - values[i - 1] if i else math.inf
        above = values[i] - x if i < len(values) else math.inf
        return min(below, above) / span

    def _score(self, x: float) -> float:
        """Score of ``x`` on the past only."""
        self._ensure_checked()
        s = 1.0 - 2.0 ** (-self._novelty(x) / self.scale)
        return s * _DAMPING if self._quiet else s

    # -- learning -----------------------------------------------------------------------

    def _forget_oldest(self) -> None:
        values = self._sorted
        del values[bisect.bisect_left(values, self._ring.popleft())]

    def _learn(self, x: float, score: float) -> None:
        """Remember ``x`` and start a refractory period if ``score`` was an alert."""
        self._ensure_checked()
        if self._quiet:
            self._quiet -= 1
        elif score >= _ALERT:
            self._quiet = self.refractory
        self._ring.append(x)
        bisect.insort(self._sorted, x)
        while len(self._ring) > self.memory:
            self._forget_oldest()
        self._low = min(self._low, x)
        self._high = max(self._high, x)
        self.n += 1

    # -- public API ---------------------------------------------------------------------

    def score_one(self, value: float, ts: datetime | None = None) -> float:
        """Anomaly score of ``value`` in [0, 1] given everything learnt so far (state unchanged)."""
        return self._score(value)

    def learn_one(self, value: float, ts: datetime | None = None) -> None:
        """Learn ``value`` (read at ``ts``) without reporting a score."""
        self._learn(value, self._score(value))

    def score_learn_one(self, value: float, ts: datetime | None = None) -> float:
        """Score ``value`` on the past only, then learn it: the no-look-ahead online step."""
        s = self._score(value)
        self._learn(value, s)
        return s
