"""An online anomaly detector for one numeric metric: how far a reading lies from every recent one.

Two views score each reading before it is learnt; the detector reports the larger score.

*Value view* (a one-nearest-neighbour novelty, as in KNN-CAD, on single values): the distance of
the reading to the nearest of the last ``memory`` readings, as a share of the range of values
seen so far. Dividing by the series' own range makes the novelty comparable from one series to
another, so one threshold suits every series. The bar the novelty is measured against is raised
in two cases where a new value is not news:

* where remembered values are sparse (the tail of a heavy-tailed series, say), to ``spread``
  times the mean gap between the ``_NEIGHBOURS`` remembered values nearest the reading: in a
  tail whose values lie far apart, landing a little beyond them is ordinary;
* after recent alerts, by ``1 + fatigue·A``, with ``A`` the number of the view's alerts, each
  fading with a half-life of ``memory`` readings: a series that keeps producing new values needs
  ever larger ones to alert again.

*Seasonal view* (only when readings carry timestamps and ``season`` > 0): the same novelty, but
against the readings remembered at the same hour of the ``season`` (one of 24 slots, e.g. the
hour of the day) — a value that is ordinary for the series but not at this time of day (a daily
peak that does not come). Such novelties are common in series without a clean cycle, so the
view only speaks when the novelty exceeds ``season_gain`` times the largest seasonal novelty of
the last ``season_window`` readings, i.e. when its own history says it is rare.

Each view's output is ``1 - 2^(-novelty/bar)``: a novelty equal to the bar scores 0.5, the alert
level. After an alert, a view's next ``refractory`` outputs are halved so that one event alerts
once. State is bounded: the last ``memory`` values (a ring and the same values sorted), at most
``_SLOT_MEMORY`` values per seasonal slot, a window of recent seasonal novelties, and a few floats.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from datetime import datetime

from workbench.models.base import ParamsMixin, check_range

_ALERT = 0.5
"""Output at which a reading counts as an alert (novelty equal to the bar)."""
_DAMPING = 0.5
"""Factor on a view's output during its refractory period: it stays below an alert."""
_NEIGHBOURS = 10
"""Remembered values around a reading whose mean gap measures how sparse values are there."""
_SLOTS = 24
"""Seasonal slots per season (hours of the day for a daily season)."""
_SLOT_MEMORY = 200
"""Values remembered per seasonal slot (the most recent ones)."""
_SLOT_MIN = 20
"""Values a seasonal slot needs before the seasonal view judges readings that fall in it."""
_SEASON_WARMUP = 500
"""Seasonal novelties to collect before the seasonal view may alert (its history of itself)."""
_SEASON_FLOOR = 0.1
"""Smallest seasonal bar, as a share of the range: small differences are never seasonal news."""


class _Slot:
    """The most recent values seen in one seasonal slot: a ring and the same values sorted."""

    __slots__ = ("ring", "sorted")

    def __init__(self) -> None:
        self.ring: deque[float] = deque()
        self.sorted: list[float] = []

    def add(self, x: float, cap: int) -> None:
        self.ring.append(x)
        bisect.insort(self.sorted, x)
        while len(self.ring) > cap:
            del self.sorted[bisect.bisect_left(self.sorted, self.ring.popleft())]


def _nearest(values: list[float], x: float) -> tuple[int, float]:
    """Insertion index of ``x`` in sorted ``values`` and its distance to the nearest of them."""
    i = bisect.bisect_left(values, x)
    below = x - values[i - 1] if i else math.inf
    above = values[i] - x if i < len(values) else math.inf
    return i, min(below, above)


class UnivariateDetector(ParamsMixin):
    """Online detector for one metric: ``score_one``/``learn_one``, scores in [0, 1]."""

    def __init__(
        self,
        memory: int = 5000,
        scale: float = 0.015,
        warmup: int = 150,
        refractory: int = 100,
        spread: float = 0.7,
        fatigue: float = 0.07,
        season: int = 86400,
        season_gain: float = 1.5,
        season_window: int = 3000,
    ) -> None:
        self.memory = memory
        self.scale = scale
        self.warmup = warmup
        self.refractory = refractory
        self.spread = spread
        self.fatigue = fatigue
        self.season = season
        self.season_gain = season_gain
        self.season_window = season_window
        self.reset()

    # -- parameters ---------------------------------------------------------------------

    def _check_params(self) -> None:
        check_range("memory", self.memory, 10, 1_000_000, integer=True)
        check_range("scale", self.scale, 1e-6, 10)
        check_range("warmup", self.warmup, 1, 1_000_000, integer=True)
        check_range("refractory", self.refractory, 0, 1_000_000, integer=True)
        check_range("spread", self.spread, 0, 100)
        check_range("fatigue", self.fatigue, 0, 100)
        check_range("season", self.season, 0, 10_000_000_000, integer=True)
        check_range("season_gain", self.season_gain, 0, 1000)
        check_range("season_window", self.season_window, 1, 1_000_000, integer=True)

    def _params_changed(self, names: set[str]) -> None:
        if "memory" in names:
            while len(self._ring) > self.memory:
                self._forget_oldest()
            self._fade = 0.5 ** (1.0 / self.memory)
        if "season_window" in names:
            while self._peaks and self._peaks[0][0] <= self._seen - self.season_window:
                self._peaks.popleft()
        if "season" in names:
            self._slots = {}
            self._peaks.clear()
            self._seen = 0

    def _ensure_checked(self) -> None:
        if not self._checked:
            self._check_params()
            self._fade = 0.5 ** (1.0 / self.memory)
            self._checked = True

    def reset(self) -> None:
        """Forget everything learnt (parameters stay)."""
        self.n = 0
        self._ring: deque[float] = deque()
        self._sorted: list[float] = []
        self._low = math.inf
        self._high = -math.inf
        self._quiet = 0
        """Readings left in the value view's refractory period after its last alert."""
        self._alerts = 0.0
        """The value view's recent alerts, each fading with a half-life of ``memory`` readings."""
        self._fade = 1.0
        self._checked = False  # validate (and set the fade) again on next use
        self._slots: dict[int, _Slot] = {}
        self._peaks: deque[tuple[int, float]] = deque()
        """Seasonal novelties of the last ``season_window`` readings that could still be the
        window's maximum, as (reading number, novelty), novelties decreasing: a monotonic queue."""
        self._seen = 0
        """Seasonal novelties collected since the first non-zero one."""
        self._season_quiet = 0

    def state_size(self) -> int:
        """Numbers held (bounded once ``memory`` readings are in): for memory checks."""
        slots = sum(len(s.ring) + len(s.sorted) for s in self._slots.values())
        return len(self._ring) + len(self._sorted) + slots + 2 * len(self._peaks) + 6

    # -- scoring ------------------------------------------------------------------------

    def _value_score(self, x: float) -> float:
        """Value view: novelty of ``x`` among the last ``memory`` values, against its bar."""
        span = self._high - self._low
        if self.n < self.warmup or not span > 0:
            return 0.0
        values = self._sorted
        i, distance = _nearest(values, x)
        bar = self.scale * span
        if self.spread > 0 and len(values) > 1:
            a = max(0, min(i - _NEIGHBOURS // 2, len(values) - _NEIGHBOURS))
            b = min(len(values) - 1, a + _NEIGHBOURS - 1)
            bar = max(bar, self.spread * (values[b] - values[a]) / (b - a))
        bar *= 1.0 + self.fatigue * self._alerts
        s = 1.0 - 2.0 ** (-distance / bar)
        return s * _DAMPING if self._quiet else s

    def _slot(self, ts: datetime | None) -> int | None:
        """Seasonal slot of a reading taken at ``ts`` (None: no seasonal view)."""
        if ts is None or not self.season:
            return None
        seconds = ts.toordinal() * 86400 + ts.hour * 3600 + ts.minute * 60 + ts.second
        return (seconds % self.season) * _SLOTS // self.season

    def _season_novelty(self, x: float, slot: int | None) -> float:
        """Distance from ``x`` to the nearest value seen in its slot, as a share of the range."""
        span = self._high - self._low
        if slot is None or self.n < self.warmup or not span > 0:
            return 0.0
        seen = self._slots.get(slot)
        if seen is None or len(seen.sorted) < _SLOT_MIN:
            return 0.0
        return _nearest(seen.sorted, x)[1] / span

    def _season_score(self, novelty: float) -> float:
        """Seasonal view: ``novelty`` against the largest recent one (times ``season_gain``)."""
        if self._seen < _SEASON_WARMUP:
            return 0.0
        peak = self._peaks[0][1] if self._peaks else 0.0
        bar = max(_SEASON_FLOOR, self.season_gain * peak)
        s = 1.0 - 2.0 ** (-novelty / bar)
        return s * _DAMPING if self._season_quiet else s

    def _scores(self, x: float, ts: datetime | None) -> tuple[float, float, float, int | None]:
        """Both views' scores of ``x`` on the past only, the seasonal novelty and the slot."""
        self._ensure_checked()
        slot = self._slot(ts)
        novelty = self._season_novelty(x, slot)
        return self._value_score(x), self._season_score(novelty), novelty, slot

    # -- learning -----------------------------------------------------------------------

    def _forget_oldest(self) -> None:
        values = self._sorted
        del values[bisect.bisect_left(values, self._ring.popleft())]

    def _learn(self, x: float, scores: tuple[float, float, float, int | None]) -> None:
        """Remember ``x``; start a view's refractory period if its score was an alert."""
        value_score, season_score, novelty, slot = scores
        if self._quiet:
            self._quiet -= 1
        elif value_score >= _ALERT:
            self._quiet = self.refractory
            self._alerts += 1.0
        self._alerts *= self._fade
        if self._season_quiet:
            self._season_quiet -= 1
        elif season_score >= _ALERT:
            self._season_quiet = self.refractory
        if slot is not None:
            if novelty > 0 or self._seen:
                self._seen += 1
                peaks = self._peaks
                while peaks and peaks[-1][1] <= novelty:
                    peaks.pop()
                peaks.append((self._seen, novelty))
                while peaks[0][0] <= self._seen - self.season_window:
                    peaks.popleft()
            self._slots.setdefault(slot, _Slot()).add(x, _SLOT_MEMORY)
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
        value_score, season_score, _, _ = self._scores(value, ts)
        return max(value_score, season_score)

    def learn_one(self, value: float, ts: datetime | None = None) -> None:
        """Learn ``value`` (read at ``ts``) without reporting a score."""
        self._learn(value, self._scores(value, ts))

    def score_learn_one(self, value: float, ts: datetime | None = None) -> float:
        """Score ``value`` on the past only, then learn it: the no-look-ahead online step."""
        scores = self._scores(value, ts)
        self._learn(value, scores)
        return max(scores[0], scores[1])
