"""An online anomaly detector for one numeric metric: cheap surprises, ranked against their past.

Each reading is judged, before it is learnt, by two exponentially weighted views: its step from
the previous reading against typical steps (spikes, level shifts, drops to zero) and its change
from the same time one day earlier against typical day-to-day changes (broken daily patterns).
The larger standardized surprise is the raw score. Raw scores differ in scale from one series to
another, so, in the spirit of Numenta's anomaly likelihood, the output is how rare the raw score
is among this series' own recent raw scores (a fixed-bin histogram with exponential forgetting):
one threshold then suits every series. After an alert, a decaying peak damps the next scores so
that one event alerts once. State is a few floats, a histogram and a one-day ring buffer (at
most ``season_max`` values): memory does not grow with time.
"""

from __future__ import annotations

import math
from datetime import datetime

from workbench.models.base import ParamsMixin, check_range

_SECONDS_PER_DAY = 86400.0
_BINS = 128
_RANK_NORM = math.log(10_000.0)
"""A raw score rarer than 1 in 10,000 recent ones gets the full rank part of the score."""
_RANK_WEIGHT = 0.9
"""Share of the output from rarity; the rest, from the raw size, breaks ties between records."""
_DAMPING = 0.5
"""Factor on a score that does not beat the (decaying) peak of recent scores."""
_PRIOR_POWER = 2.0
"""Beyond every past raw score, rarity keeps growing with size: the pseudo-count is (1-raw)^2."""


class UnivariateDetector(ParamsMixin):
    """Online detector for one metric: ``score_one``/``learn_one``, scores in [0, 1]."""

    def __init__(
        self,
        window: int = 600,
        season_max: int = 2016,
        rarity_window: int = 500,
        raw_scale: float = 8.0,
        warmup: int = 150,
        refractory: int = 100,
    ) -> None:
        self.window = window
        self.season_max = season_max
        self.rarity_window = rarity_window
        self.raw_scale = raw_scale
        self.warmup = warmup
        self.refractory = refractory
        self._checked = False
        self.reset()

    # -- parameters ---------------------------------------------------------------------

    def _check_params(self) -> None:
        check_range("window", self.window, 10, 1_000_000, integer=True)
        check_range("season_max", self.season_max, 0, 100_000, integer=True)
        check_range("rarity_window", self.rarity_window, 10, 10_000_000, integer=True)
        check_range("raw_scale", self.raw_scale, 0.01, 1000)
        check_range("warmup", self.warmup, 0, 1_000_000, integer=True)
        check_range("refractory", self.refractory, 0, 1_000_000, integer=True)

    def _params_changed(self, names: set[str]) -> None:
        if "season_max" in names:
            self._season, self._season_pos = [], 0

    def _ensure_checked(self) -> None:
        if not self._checked:
            self._check_params()
            self._checked = True

    def reset(self) -> None:
        """Forget everything learnt (parameters stay)."""
        self.n = 0
        self._prev = 0.0
        self._prev_ts: datetime | None = None
        self._dt = 0.0
        self._scale = 0.0
        self._m_step = self._v_step = 0.0
        self._m_season = self._v_season = 0.0
        self._season: list[float] = []
        self._season_pos = 0
        self._hist = [0.0] * _BINS
        self._hist_total = 0.0
        self._w = 1.0
        self._peak = 0.0

    def state_size(self) -> int:
        """Numbers held (constant once the day buffer is full): for memory checks."""
        return len(self._season) + len(self._hist) + 16

    # -- scoring ------------------------------------------------------------------------

    def _period(self) -> int:
        """Readings per day, if a day fits in ``season_max`` readings; else 0 (no season)."""
        if self._dt <= 0:
            return 0
        p = round(_SECONDS_PER_DAY / self._dt)
        return p if 2 <= p <= self.season_max else 0

    def _raw(self, x: float) -> float:
        """The larger standardized surprise of ``x``, squashed into [0, 1)."""
        if self.n < 2:
            return 0.0
        tiny = 1e-9 * (self._scale + 1.0)
        z = abs(x - self._prev - self._m_step) / (math.sqrt(self._v_step) + tiny)
        season = self._season
        if season and len(season) == self._period():
            r = x - season[self._season_pos]
            z = max(z, abs(r - self._m_season) / (math.sqrt(self._v_season) + tiny))
        return 1.0 - math.exp(-z / self.raw_scale)

    def _rank(self, raw: float) -> float:
        """How rare ``raw`` is among past raw scores: -ln(share at least as large), scaled."""
        hist = self._hist
        b = min(int(raw * _BINS), _BINS - 1)
        prior = self._w * (1.0 - raw) ** _PRIOR_POWER
        tail = (sum(hist[b:]) + prior) / (self._hist_total + self._w)
        return min(1.0, -math.log(max(tail, 1e-300)) / _RANK_NORM)

    def _score(self, x: float) -> tuple[float, float]:
        """(score, raw) of ``x`` on the past only."""
        self._ensure_checked()
        raw = self._raw(x)
        if self.n < self.warmup:
            return 0.0, raw
        s = _RANK_WEIGHT * self._rank(raw) + (1.0 - _RANK_WEIGHT) * raw
        return (s if s > self._peak else s * _DAMPING), raw

    # -- learning -----------------------------------------------------------------------

    def _learn(self, x: float, ts: datetime | None, raw: float, score: float) -> None:
        """Fold ``x`` and its raw score into the baselines."""
        self._ensure_checked()
        if ts is not None and self._prev_ts is not None and self._dt <= 0:
            self._dt = (ts - self._prev_ts).total_seconds()
        self._prev_ts = ts
        a = 2.0 / (self.window + 1)
        if self.n:
            d = x - self._prev - self._m_step
            self._m_step += a * d
            self._v_step = (1 - a) * (self._v_step + a * d * d)
        self._scale += a * (abs(x) - self._scale) if self.n else abs(x)
        self._learn_season(x, a)
        self._prev = x
        self._hist[min(int(raw * _BINS), _BINS - 1)] += self._w
        self._hist_total += self._w
        self._w /= 1.0 - 1.0 / self.rarity_window
        if self._w > 1e200:
            self._hist = [h / self._w for h in self._hist]
            self._hist_total /= self._w
            self._w = 1.0
        fade = 0.5 ** (1.0 / self.refractory) if self.refractory else 0.0
        self._peak = max(score, self._peak * fade)
        self.n += 1

    def _learn_season(self, x: float, a: float) -> None:
        p = self._period()
        if not p:
            return
        season = self._season
        if len(season) < p:
            season.append(x)
            return
        d = x - season[self._season_pos] - self._m_season
        self._m_season += a * d
        self._v_season = (1 - a) * (self._v_season + a * d * d)
        season[self._season_pos] = x
        self._season_pos = (self._season_pos + 1) % p

    # -- public API ---------------------------------------------------------------------

    def score_one(self, value: float, ts: datetime | None = None) -> float:
        """Anomaly score of ``value`` in [0, 1] given everything learnt so far (state unchanged)."""
        return self._score(value)[0]

    def learn_one(self, value: float, ts: datetime | None = None) -> None:
        """Learn ``value`` (read at ``ts``) without reporting a score."""
        s, raw = self._score(value)
        self._learn(value, ts, raw, s)

    def score_learn_one(self, value: float, ts: datetime | None = None) -> float:
        """Score ``value`` on the past only, then learn it: the no-look-ahead online step."""
        s, raw = self._score(value)
        self._learn(value, ts, raw, s)
        return s
