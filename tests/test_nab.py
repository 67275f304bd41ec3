"""NAB scorer (hand-computed cases), the univariate detector, and `workbench eval nab` (the live
detection stage on profiles drafted from the corpus)."""

from __future__ import annotations

import csv
import json
import math
import os
import random
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from workbench.evaluation.nab_score import (
    PROFILES,
    label_file,
    probation_rows,
    scaled_sigmoid,
    score_corpus,
    score_file,
)
from workbench.models.univariate import UnivariateDetector
from workbench.profiles.load import load_profiles

NAB_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "nab"
T0 = datetime(2024, 1, 1)
STANDARD = PROFILES["standard"]

# 20 rows, probation floor(0.15·20) = 3 rows, one window over rows 10..14 (width 5).
N, LEFT, RIGHT, WIDTH = 20, 10, 14, 5
STAMPS = [T0 + timedelta(minutes=i) for i in range(N)]
WINDOW = [(STAMPS[LEFT], STAMPS[RIGHT])]


def s(x: float) -> float:
    """NAB's scaled sigmoid written independently: 2/(1+e^{5x}) - 1 = tanh(-5x/2)."""
    return math.tanh(-2.5 * x)


def file_with(hits: dict[int, float], name: str = "c/f.csv"):
    scores = [hits.get(i, 0.0) for i in range(N)]
    return label_file(name, STAMPS, scores, WINDOW)


def raw_at(hits: dict[int, float], threshold: float = 0.5) -> float:
    return score_file(file_with(hits), STANDARD, threshold).raw


def test_sigmoid_and_probation() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.0) == -1.0
    assert probation_rows(20) == 3
    assert probation_rows(100_000) == 750


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (LEFT, 1.0),  # first row of the window: full reward
        (12, s(-3 / WIDTH) / s(-1.0)),  # middle
        (RIGHT, s(-1 / WIDTH) / s(-1.0)),  # last row
    ],
)
def test_detection_inside_window(row: int, expected: float) -> None:
    assert raw_at({row: 1.0}) == pytest.approx(expected)


def test_only_first_detection_counts() -> None:
    assert raw_at({12: 1.0, 13: 1.0, 14: 1.0}) == pytest.approx(s(-0.6) / s(-1.0))


def test_missed_window_and_false_positives() -> None:
    assert raw_at({}) == pytest.approx(-1.0)
    assert raw_at({5: 1.0}) == pytest.approx(-1.0 - 0.11)  # FP before any window
    after = 0.11 * s((16 - RIGHT) / (WIDTH - 1))  # FP 2 rows after: cheaper than 0.11
    assert raw_at({16: 1.0}) == pytest.approx(-1.0 + after)
    assert -0.11 < after < 0
    assert raw_at({1: 1.0}) == pytest.approx(-1.0)  # inside the probationary period


def test_threshold_is_the_best_one() -> None:
    f = file_with({12: 0.9, 5: 0.8, 16: 0.7, 18: 0.2})
    result = score_corpus([f], STANDARD)
    assert result.threshold == 0.9
    assert result.raw == pytest.approx(s(-0.6) / s(-1.0))
    assert result.files["c/f.csv"].detected == 1
    assert result.files["c/f.csv"].fp_rows == 0


def test_normalization_null_and_perfect() -> None:
    stamps = [T0 + timedelta(minutes=i) for i in range(200)]
    window = [(stamps[100], stamps[104])]
    never = score_corpus([label_file("c/f.csv", stamps, [0.0] * 200, window)], STANDARD)
    assert never.threshold == 1.1  # firing everywhere would cost more than the window
    assert never.raw == never.null == -1.0
    assert never.normalized == pytest.approx(0.0)
    perfect = score_corpus([file_with({LEFT: 1.0})], STANDARD)
    assert perfect.perfect == 1.0
    assert perfect.normalized == pytest.approx(100.0)
    assert score_corpus([file_with({})], PROFILES["reward_low_FN_rate"]).null == -2.0


def test_repeated_timestamps_use_rows() -> None:
    stamps = [*STAMPS[:8], STAMPS[7], *STAMPS[8:19]]  # row 8 repeats row 7's time
    f = label_file("c/f.csv", stamps, [0.0] * N, WINDOW)
    assert f.window[LEFT + 1] == 0 and f.window[LEFT] == -1


# -- detector -------------------------------------------------------------------------------


def daily(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [10 + 3 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 0.3) for i in range(n)]


def run(values: list[float], detector: UnivariateDetector | None = None) -> list[float]:
    d = detector or UnivariateDetector()
    return [d.score_learn_one(v, T0 + timedelta(minutes=5 * i)) for i, v in enumerate(values)]


def test_detector_parameters_validated_on_use_and_at_run_time() -> None:
    bad = UnivariateDetector(memory=5)
    with pytest.raises(ValueError, match="memory"):
        bad.score_one(1.0)
    d = UnivariateDetector()
    run(daily(300), d)
    with pytest.raises(ValueError, match="refractory"):
        d.set_params(refractory=-1)
    assert d.refractory == 100
    d.set_params(refractory=10, memory=200)
    assert d.get_params()["refractory"] == 10
    assert len(d._ring) == len(d._sorted) == 200  # the memory shrank at once
    with pytest.raises(ValueError, match="season_window"):
        d.set_params(season_window=0)
    assert 0.0 <= d.score_learn_one(11.0, T0 + timedelta(days=2)) <= 1.0


def test_quiet_on_clean_series_loud_on_spike_and_level_shift() -> None:
    clean = run(daily(4000))
    assert max(clean[500:]) < 0.8
    spiky = daily(4000)
    spiky[3500] += 6
    assert run(spiky)[3500] > 0.9
    shifted = daily(4000)
    shifted[3500:] = [v + 4 for v in shifted[3500:]]
    scores = run(shifted)
    assert scores[3500] > 0.85 and scores[3500] > max(scores[500:3500])


def test_one_event_alerts_once() -> None:
    values = daily(2000)
    values[1500:1503] = [30.0, 31.0, 32.0]  # three ever-higher readings: one event
    scores = run(values)
    assert scores[1500] > 0.9
    assert max(scores[1501:1503]) < 0.5  # damped during the refractory period
    assert max(scores[500:1500]) < 0.5


def test_small_memory_quiet_on_noise_loud_on_spike() -> None:
    rng = random.Random(3)
    for memory in (100, 300, 500):
        noise = [20 + rng.gauss(0, 1) for _ in range(3000)]
        scores = run(noise, UnivariateDetector(memory=memory))
        # A small memory forgets the noise's tails, so a few readings beyond it alert: rarely.
        assert sum(x >= 0.5 for x in scores[500:]) < 0.01 * 2500, memory
        noise[2500] = 35.0
        assert run(noise, UnivariateDetector(memory=memory))[2500] > 0.9, memory


def test_busy_series_needs_larger_news() -> None:
    """Fatigue: after many recent alerts the same novelty scores lower than in a calm series."""
    calm = UnivariateDetector()
    busy = UnivariateDetector()
    run(daily(2000), calm)
    run(daily(2000), busy)
    busy._alerts = 10.0
    assert busy.score_one(20.0) < calm.score_one(20.0)


def test_seasonal_view_catches_a_missing_daily_peak() -> None:
    """A value common for the series but not at this hour alerts only with timestamps."""
    rng = random.Random(4)
    values = [(80.0 if 100 <= i % 288 < 200 else 20.0) + rng.gauss(0, 1) for i in range(288 * 20)]
    day = 288 * 18
    values[day + 100 : day + 200] = [20.0 + rng.gauss(0, 1) for _ in range(100)]
    with_time = run(values)
    assert max(with_time[day + 100 : day + 200]) > 0.9
    assert max(with_time[288 * 5 : day]) < 0.5
    d = UnivariateDetector()
    without_time = [d.score_learn_one(v) for v in values]
    assert max(without_time[day + 100 : day + 200]) < 0.5


def test_score_one_does_not_learn() -> None:
    d = UnivariateDetector()
    run(daily(500), d)
    before = d.score_one(50.0)
    assert d.score_one(50.0) == before


def test_state_is_bounded() -> None:
    d = UnivariateDetector()
    values = daily(100_000, seed=1)
    run(values[:10_000], d)
    size = d.state_size()
    for i, v in enumerate(values[10_000:], 10_000):
        d.score_learn_one(v, T0 + timedelta(minutes=5 * i))
    assert d.state_size() <= 2 * d.memory + 24 * 2 * 200 + 2 * d.season_window + 6
    assert size > 2 * d.memory
    assert len(d._ring) == d.memory and len(d._peaks) <= d.season_window
    assert all(len(s.ring) <= 200 for s in d._slots.values()) and len(d._slots) <= 24


# -- runner ---------------------------------------------------------------------------------


def write_corpus(root: Path, spike_at: int | None = None) -> Path:
    """Two NAB-format files of a daily cycle (5-minute rows), one window each over rows
    300–340; ``spike_at``: the first file's row there jumps by 20 (the cycle's range is 6)."""
    data = root / "data"
    labels = {}
    first = daily(600)
    if spike_at is not None:
        first[spike_at] += 20
    for name, values in {"cat_a/one.csv": first, "cat_b/two.csv": daily(400, seed=2)}.items():
        path = data / name
        path.parent.mkdir(parents=True)
        stamps = [(T0 + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(600)]
        with path.open("w", newline="") as fh:
            csv.writer(fh).writerows([("timestamp", "value"), *zip(stamps, values, strict=False)])
        labels[name] = [[f"{stamps[300]}.000000", f"{stamps[340]}.000000"]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(labels))
    return data


def _eval_nab(data: Path, out: Path, *extra: str) -> dict:
    """`workbench eval nab --json` in a process of its own (it runs on the profiles it drafts)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "workbench.cli",
            "eval",
            "nab",
            "--data",
            str(data),
            "--out",
            str(out),
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "WORKBENCH_PROFILES"},
    )
    assert done.returncode == 0, done.stderr
    assert "readings/s" in done.stderr  # progress, with its unit
    return json.loads(done.stdout)


def test_eval_nab_runs_the_live_stage_on_drafted_profiles_and_never_shows_it_labels(
    tmp_path: Path,
) -> None:
    data = write_corpus(tmp_path, spike_at=320)
    results = _eval_nab(data, tmp_path / "out")
    drafted = load_profiles(tmp_path / "out" / "nab-profiles.toml")  # profiles check accepts it
    assert drafted.type_names == ("one", "two")
    one = drafted.type("one")
    assert one.interval_s == 300 and one.metric_names == ("value",)
    assert one.metric("value").min == 0 and one.metric("value").max >= 2 * 16
    for name, n in {"cat_a/one.csv": 600, "cat_b/two.csv": 400}.items():
        with (tmp_path / "out" / name).open() as fh:
            rows = list(csv.DictReader(fh))
        assert len(rows) == n
        assert set(rows[0]) == {"timestamp", "value", "anomaly_score"}
        assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in rows)
    assert set(results["scores"]) == set(PROFILES)
    standard = results["scores"]["standard"]["files"]
    spiked = standard["cat_a/one.csv"]
    assert (spiked["windows"], spiked["detected"], spiked["fp_rows"]) == (1, 1, 0)
    assert spiked["raw"] > 0.5  # found in the window's first half
    # Labels are read after detection only: moved windows change no score.
    labels = tmp_path / "labels" / "combined_windows.json"
    labels.write_text(labels.read_text().replace("2024-01-02", "2024-01-01"))
    again = _eval_nab(data, tmp_path / "again")
    for name in ("cat_a/one.csv", "cat_b/two.csv"):
        assert (tmp_path / "again" / name).read_text() == (tmp_path / "out" / name).read_text()
    assert again["rows"] == results["rows"] == 1000


def test_eval_nab_without_labels_writes_scores_only(tmp_path: Path) -> None:
    data = write_corpus(tmp_path)
    results = _eval_nab(data, tmp_path / "out", "--labels", str(tmp_path / "missing.json"))
    assert results["scores"] == {} and results["files"] == 2 and results["labels"] is None
