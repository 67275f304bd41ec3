"""The NAB v1.1 score (Lavin & Ahmad 2015), as numenta/NAB's ``sweeper.py`` and ``runner.py`` do it.

Per file: the first ``min(floor(0.15·rows), 750)`` rows are probationary and not scored. Inside
a window a detection is worth ``tp·S(-(right - i + 1)/width)/S(-1)``, where ``S(x) = 2/(1+e^{5x})
- 1``, and only the best (earliest) detection of a window counts; a window without one costs
``-fn``. A detection outside every window costs ``fp·S((i - prev_right)/(prev_width - 1))`` when a
window precedes it (so it is cheaper just after a window), ``-fp`` otherwise; ``S`` is clamped to
-1 from 3 on. Window bounds are timestamps; like NAB, each maps to the first row that carries it
(a few files repeat timestamps), and rows, not timestamps, are the unit.

One threshold serves the whole corpus: NAB sweeps it over the distinct scores (detection means
``score >= threshold``, starting from 1.1 = never fire) and keeps the one with the largest total.
The total is normalized as ``100·(raw - null)/(perfect - null)``: null is a detector that never
fires (``-fn`` per scored window), perfect earns ``tp`` per window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np


@dataclass(frozen=True, slots=True)
class Profile:
    """One NAB application profile: the weights of true/false positives and negatives."""

    tp: float
    fp: float
    fn: float
    tn: float = 1.0


PROFILES: dict[str, Profile] = {
    "standard": Profile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": Profile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": Profile(tp=1.0, fp=0.11, fn=2.0),
}

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS = 750
NEVER = 1.1
"""NAB's starting threshold: above every score, so nothing is detected."""


def scaled_sigmoid(x: float) -> float:
    """NAB's ``2/(1+exp(5x)) - 1``: +0.987 at a window's left edge, 0 at its right, -1 from 3."""
    if x >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def probation_rows(n_rows: int) -> int:
    """Rows at the start of a file that are not scored."""
    return min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS)


@dataclass(slots=True)
class LabelledFile:
    """One file's scores with, per row, its window (or -1) and its unweighted NAB value."""

    name: str
    scores: np.ndarray
    window: np.ndarray
    """Per row: index of the window it lies in, -1 outside every window."""
    value: np.ndarray
    """Per row: S(position)/S(-1) inside a window; S(distance past the last window) outside."""
    probation: int
    n_windows: int
    scored_windows: int
    """Windows with at least one row after the probationary period (the ones NAB counts)."""


def _row_of(timestamps: Sequence[datetime], ts: datetime, name: str) -> int:
    try:
        return timestamps.index(ts)
    except ValueError:
        raise ValueError(f"{name}: window bound {ts} is not a row timestamp") from None


def label_file(
    name: str,
    timestamps: Sequence[datetime],
    scores: Sequence[float],
    windows: Sequence[tuple[datetime, datetime]],
) -> LabelledFile:
    """Lay a file's windows over its rows, as NAB's ``Sweeper.calcSweepScore`` does."""
    n = len(timestamps)
    if len(scores) != n:
        raise ValueError(f"{name}: {len(scores)} scores for {n} rows")
    ts = list(timestamps)
    bounds = sorted((_row_of(ts, a, name), _row_of(ts, b, name)) for a, b in windows)
    window = np.full(n, -1, dtype=np.int64)
    value = np.full(n, -1.0)
    max_tp = scaled_sigmoid(-1.0)
    # Rows before the first window, and after a one-row window (where NAB would divide by
    # zero), keep the full -1.
    prev_right, prev_width = -1, 0
    cursor = 0
    for k, (left, right) in enumerate(bounds):
        width = right - left + 1
        if prev_right >= 0 and prev_width > 1:
            gap = np.arange(cursor, left)
            value[cursor:left] = [scaled_sigmoid((i - prev_right) / (prev_width - 1)) for i in gap]
        rows = np.arange(left, right + 1)
        window[left : right + 1] = k
        value[left : right + 1] = [scaled_sigmoid(-(right - i + 1) / width) / max_tp for i in rows]
        prev_right, prev_width, cursor = right, width, right + 1
    if prev_right >= 0 and prev_width > 1:
        value[cursor:] = [
            scaled_sigmoid((i - prev_right) / (prev_width - 1)) for i in range(cursor, n)
        ]
    probation = probation_rows(n)
    scored = len({int(w) for w in window[probation:] if w >= 0})
    return LabelledFile(
        name=name,
        scores=np.asarray(scores, dtype=float),
        window=window,
        value=value,
        probation=probation,
        n_windows=len(bounds),
        scored_windows=scored,
    )


@dataclass(frozen=True, slots=True)
class FileScore:
    """One file's result at the corpus threshold."""

    raw: float
    windows: int
    detected: int
    fp_rows: int


@dataclass(frozen=True, slots=True)
class ProfileScore:
    """A corpus score under one profile: the chosen threshold, raw and normalized totals."""

    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float
    files: dict[str, FileScore]


def sweep(files: Sequence[LabelledFile], profile: Profile) -> list[tuple[float, float]]:
    """(threshold, raw total) for every distinct score, highest threshold first, as NAB sweeps."""
    offsets = np.cumsum([0] + [f.n_windows for f in files])
    scores, windows, weights = [], [], []
    for f, off in zip(files, offsets, strict=False):
        p = f.probation
        win = f.window[p:]
        scores.append(f.scores[p:])
        windows.append(np.where(win >= 0, win + off, -1))
        weights.append(np.where(win >= 0, f.value[p:] * profile.tp, f.value[p:] * profile.fp))
    score = np.concatenate(scores)
    win = np.concatenate(windows)
    weight = np.concatenate(weights)
    order = np.argsort(-score, kind="stable")
    best = {int(w): -profile.fn for w in np.unique(win[win >= 0])}
    fp_total = 0.0
    total = sum(best.values())
    result = []
    threshold = NEVER
    for s, w, v in zip(
        score[order].tolist(), win[order].tolist(), weight[order].tolist(), strict=True
    ):
        if s != threshold:
            result.append((threshold, fp_total + total))
            threshold = s
        if w < 0:
            fp_total += v
        elif v > best[w]:
            total += v - best[w]
            best[w] = v
    result.append((threshold, fp_total + total))
    return result


def score_file(f: LabelledFile, profile: Profile, threshold: float) -> FileScore:
    """One file's raw NAB score and counts when detections are ``score >= threshold``."""
    p = f.probation
    hit = f.scores[p:] >= threshold
    win = f.window[p:]
    val = f.value[p:]
    fp = hit & (win < 0)
    raw = float(val[fp].sum() * profile.fp)
    detected = 0
    for k in {int(w) for w in win if w >= 0}:
        hits = np.flatnonzero(hit & (win == k))
        if hits.size:
            detected += 1
            raw += float(val[hits[0]]) * profile.tp
        else:
            raw -= profile.fn
    return FileScore(raw=raw, windows=f.n_windows, detected=detected, fp_rows=int(fp.sum()))


def score_corpus(files: Sequence[LabelledFile], profile: Profile) -> ProfileScore:
    """The corpus's NAB score under one profile at the threshold that maximizes it."""
    threshold, raw = max(sweep(files, profile), key=lambda tr: tr[1])
    null = -profile.fn * sum(f.scored_windows for f in files)
    perfect = profile.tp * sum(f.n_windows for f in files)
    normalized = 100.0 * (raw - null) / (perfect - null) if perfect != null else 0.0
    per_file = {f.name: score_file(f, profile, threshold) for f in files}
    return ProfileScore(threshold, raw, null, perfect, normalized, per_file)
