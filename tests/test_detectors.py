"""Detectors: crafted series are found and clean ones stay quiet; run-time parameters; bounded
state; the ensemble's per-kind recall on a short simulator run; the live single-reading API."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pytest

from workbench.models import (
    CounterDetector,
    DensityDetector,
    DropoutDetector,
    EnsembleDetector,
    EwmaDetector,
    ForestDetector,
    LiveAnomalyDetector,
    LocationJumpDetector,
    NoiseBurstDetector,
    NoveltyDetector,
    RobustZDetector,
    ShiftDetector,
    StuckDetector,
)
from workbench.models.base import Finding
from workbench.models.batch import columnar
from workbench.models.density import BRUTE_ROWS
from workbench.models.explain import explain
from workbench.models.forest import FLAT_ROWS, FlatForest, JoinedForests, TypeModel
from workbench.schema import EnvSensor, SmartMeter
from workbench.simulator import Truth, simulate

T0 = datetime(2024, 1, 15, 8, tzinfo=UTC)
INTERVAL = 5.0


def env_series(temps: list[float], device: str = "env-1", lat: float = 52.5) -> list[EnvSensor]:
    """An env sensor reporting the given temperatures every 5 s."""
    rng = np.random.default_rng(0)
    return [
        EnvSensor(
            device_id=device,
            ts=T0 + timedelta(seconds=INTERVAL * i),
            seq=i,
            lat=lat,
            lon=13.4,
            firmware="1",
            temperature=round(t, 2),
            humidity=round(60 + rng.normal(0, 0.8), 1),
            battery=0.9,
        )
        for i, t in enumerate(temps)
    ]


def noise(n: int, sd: float = 0.1, seed: int = 1) -> np.ndarray:
    return 4.0 + np.random.default_rng(seed).normal(0, sd, n)


def kinds(findings: list[Finding]) -> set[str]:
    return {f.kind for f in findings}


CLEAN = noise(300)


@pytest.mark.parametrize(
    "detector",
    [
        RobustZDetector,
        EwmaDetector,
        StuckDetector,
        DropoutDetector,
        ShiftDetector,
        NoiseBurstDetector,
        LocationJumpDetector,
    ],
)
def test_clean_series_stay_quiet(detector) -> None:
    assert detector().process_batch(env_series(list(CLEAN))) == []


def test_spike_found_with_metric_and_range() -> None:
    temps = list(CLEAN)
    temps[200] += 10.0
    findings = RobustZDetector().process_batch(env_series(temps))
    assert [(f.seq, f.kind, f.metric) for f in findings] == [(200, "spike", "temperature")]
    f = findings[0]
    assert f.expected_low < 4.0 < f.expected_high < f.observed and 0.1 <= f.score <= 1.0


def young_fleet(spike_at: int | None, devices: int = 30, n: int = 8) -> list[EnvSensor]:
    """A fleet of env sensors with ``n`` readings each, interleaved; d0 spikes at ``spike_at``."""
    rng = np.random.default_rng(4)
    series = []
    for d in range(devices):
        temps = list(20.0 + d * 0.3 + rng.normal(0, 0.1, n))
        if d == 0 and spike_at is not None:
            temps[spike_at] += 8.0
        series.append(env_series(temps, device=f"d{d}"))
    return [r for step in zip(*series, strict=True) for r in step]


def test_fleet_prior_catches_spikes_of_young_devices_without_false_alarms() -> None:
    spiked = young_fleet(spike_at=6)
    findings = RobustZDetector().process_batch(spiked)
    assert [(f.device_id, f.seq, f.kind) for f in findings] == [("d0", 6, "spike")]
    assert RobustZDetector(prior=False).process_batch(spiked) == []  # 8 readings < min_history
    assert RobustZDetector().process_batch(young_fleet(spike_at=None)) == []
    assert EnsembleDetector().process_batch(young_fleet(spike_at=None)) == []


def test_level_shift_and_drift_are_named() -> None:
    shifted = list(CLEAN[:200]) + list(CLEAN[200:230] + 4.0)
    assert "level_shift" in kinds(ShiftDetector().process_batch(env_series(shifted)))
    ramp = list(CLEAN[:200]) + list(CLEAN[200:230] + np.linspace(0.2, 6.0, 30))
    assert "drift" in kinds(ShiftDetector().process_batch(env_series(ramp)))


def test_a_shift_is_reported_while_it_lasts_and_a_permanent_one_accepted_after_a_window() -> None:
    base = noise(600, sd=0.2, seed=4)
    lasting = list(base[:200]) + list(base[200:300] + 2.0) + list(base[300:500])  # 10 spreads
    found = ShiftDetector().process_batch(env_series(lasting))
    shifted = {f.seq for f in found if f.metric == "temperature"}
    # Every reading of the 100-reading shift after the first few (the last `short` must all be
    # off), and nothing once the level is back. Before the baseline stopped learning what it
    # reported, only the shift's first 38 readings were: the window had filled with it.
    assert set(range(204, 300)) <= shifted, sorted(set(range(200, 300)) - shifted)
    assert not shifted - set(range(200, 300)), sorted(shifted - set(range(200, 300)))
    permanent = list(base[:200]) + list(base[200:600] + 2.0)
    seen = {f.seq for f in ShiftDetector().process_batch(env_series(permanent))}
    assert max(seen) < 200 + 3 * 100  # accepted as the new level within about a window or two


def test_stuck_sensor() -> None:
    temps = list(CLEAN[:200]) + [4.17] * 10
    findings = StuckDetector().process_batch(env_series(temps))
    assert findings and {f.seq for f in findings} <= set(range(200, 210))
    assert kinds(findings) == {"stuck"}


def test_noise_burst() -> None:
    burst = np.random.default_rng(5).normal(0, 1.5, 12)
    temps = list(CLEAN[:200]) + list(CLEAN[200:212] + burst)
    assert "noise_burst" in kinds(NoiseBurstDetector().process_batch(env_series(temps)))


def test_dropout_reported_when_device_returns_and_while_silent() -> None:
    readings = env_series(list(CLEAN[:100]))
    gone = readings[:50] + readings[60:]
    detector = DropoutDetector()
    findings = detector.process_batch(gone)
    assert [(f.seq, f.kind, f.observed) for f in findings] == [(60, "dropout", 10.0)]
    later = readings[-1].ts + timedelta(minutes=5)
    assert [f.device_id for f in detector.silent_devices(later)] == ["env-1"]
    assert detector.silent_devices(readings[-1].ts) == []


def test_ensemble_reports_each_silence_once() -> None:
    readings = env_series(list(CLEAN[:100]))
    ensemble = EnsembleDetector()
    ensemble.process_batch(readings[:50])
    last = readings[49].ts
    assert ensemble.silent_findings(last + timedelta(seconds=2 * INTERVAL)) == []
    first = ensemble.silent_findings(last + timedelta(seconds=4 * INTERVAL))
    assert [(f.device_id, f.kind, f.metric, f.observed) for f in first] == [
        ("env-1", "dropout", None, 3.0)
    ]
    assert ensemble.silent_findings(last + timedelta(minutes=5)) == []  # the same silence
    ensemble.process_batch(readings[90:])  # back, then silent again
    again = ensemble.silent_findings(readings[-1].ts + timedelta(minutes=1))
    assert [f.device_id for f in again] == ["env-1"]
    assert EnsembleDetector(use_dropout=False).silent_findings(last) == []


def test_location_jump_in_km() -> None:
    readings = env_series(list(CLEAN[:60])) + env_series(list(CLEAN[60:63]), lat=55.0)[:3]
    findings = LocationJumpDetector().process_batch(readings)
    assert findings and findings[0].metric == "location" and 250 < findings[0].observed < 300


def _meter(kwh_per_reading: list[float], start: float = 100.0) -> list[SmartMeter]:
    energy, out = start, []
    for i, step in enumerate(kwh_per_reading):
        energy += step
        out.append(
            SmartMeter(
                device_id="m",
                ts=T0 + timedelta(seconds=INTERVAL * i),
                seq=i,
                lat=1.0,
                lon=1.0,
                firmware="1",
                power=1000.0,
                energy=round(energy, 6),
            )
        )
    return out


def test_a_counter_advancing_several_times_its_usual_rate_is_a_surge() -> None:
    usual = 1000 * INTERVAL / 3.6e6  # kWh per reading at 1 kW
    rng = np.random.default_rng(2)
    steady = list(usual * (1 + rng.normal(0, 0.04, 60)))
    findings = CounterDetector().process_batch(_meter(steady + [4 * usual] * 4))
    assert kinds(findings) == {"counter_surge"}
    assert {f.metric for f in findings} == {"energy"}
    assert "kWh/h" in explain(findings[0])
    assert CounterDetector().process_batch(_meter(steady + [1.5 * usual] * 4)) == []
    brief = [*steady, 4 * usual, *steady[:5]]  # one fast reading is not a surge
    assert CounterDetector().process_batch(_meter(brief)) == []


def test_a_counter_moving_backwards_is_a_reset_and_a_falling_battery_is_normal() -> None:
    usual = 1000 * INTERVAL / 3.6e6
    readings = _meter([usual] * 30)
    readings.append(_meter([usual] * 31, start=0.0)[-1])  # a replaced meter starts from zero
    findings = CounterDetector().process_batch(readings)
    assert kinds(findings) == {"counter_reset"} and findings[0].observed < 0
    # A battery's charge is a counter that falls: draining is its normal direction.
    draining = [
        msgspec.structs.replace(r, battery=round(0.9 - 0.0002 * i, 4))
        for i, r in enumerate(env_series([4.0] * 40, device="e"))
    ]
    assert CounterDetector().process_batch(draining) == []
    recharged = [*draining, msgspec.structs.replace(draining[-1], seq=40, battery=1.0)]
    assert kinds(CounterDetector().process_batch(recharged)) == {"counter_reset"}


@pytest.mark.parametrize("detector", [ForestDetector, DensityDetector])
def test_fleet_models_flag_outliers(detector) -> None:
    rng = np.random.default_rng(3)
    fleet = [env_series(list(4.0 + rng.normal(0, 0.1, 80)), device=f"d{d}") for d in range(40)]
    readings = [r for step in zip(*fleet, strict=True) for r in step]
    model = detector(background=False, model_update_interval=500, threshold=0.03)
    model.process_batch(readings)
    odd = env_series([*list(CLEAN[:80]), 14.0], device="d0")[-1:]
    findings = model.process_batch(odd)
    assert [f.kind for f in findings] == ["outlier"]


def test_flat_forest_scores_exactly_like_scikit_learn() -> None:
    rng = np.random.default_rng(8)
    rows = rng.normal(size=(1024, 3))
    model = ForestDetector(background=False)._fit(rows).model[0]
    for rows in (300, FLAT_ROWS + 1):  # all trees at once, then tree by tree
        probe = rng.normal(size=(rows, 3)) * 4
        assert np.allclose(FlatForest(model).score(probe), -model.score_samples(probe), atol=1e-12)


def test_forests_of_several_types_walked_together_score_as_each_alone() -> None:
    rng = np.random.default_rng(10)
    widths = (3, 2, 4)  # device types with different numbers of gauges
    models = [
        ForestDetector(background=False, random_state=w)._fit(rng.normal(size=(512, w))).model[0]
        for w in widths
    ]
    probes = [rng.normal(size=(n, w)) * 3 for n, w in zip((7, 1, 12), widths, strict=True)]
    flats = [FlatForest(m) for m in models]
    joined = JoinedForests([*flats, FlatForest(models[0])])  # one more, not scored here
    together = joined.score(flats[::-1], probes[::-1])[::-1]  # in any order
    for model, probe, score in zip(models, probes, together, strict=True):
        assert np.allclose(score, -model.score_samples(probe), atol=1e-12)


def test_a_batch_scored_by_a_forest_replaced_meanwhile_still_scores() -> None:
    rng = np.random.default_rng(11)
    detector = ForestDetector(background=False)
    fits = [detector._fit(rng.normal(size=(512, 3))) for _ in range(4)]
    probe = rng.normal(size=(5, 3))
    detector._models = {
        "a": TypeModel(probe, fitted=fits[0]),
        "b": TypeModel(probe, fitted=fits[1]),
    }
    detector._raw_scores_many([(fits[0], probe), (fits[1], probe)])  # joins a0 and b0
    detector._models["a"].fitted, detector._models["b"].fitted = fits[2], fits[3]
    # this batch was located before b's refit landed: a new, b old
    scores = detector._raw_scores_many([(fits[2], probe), (fits[1], probe)])
    expected = [-fits[k].model[0].score_samples(probe) for k in (2, 1)]
    assert all(np.allclose(s, e, atol=1e-12) for s, e in zip(scores, expected, strict=True))


def test_an_ensembles_fleet_models_find_what_they_find_alone_keeping_one_normaliser() -> None:
    readings = [r for r, _ in simulate(40, 40.0, 6000, seed=12, start=T0)]
    together = EnsembleDetector().components
    alone = {"forest": ForestDetector(), "density": DensityDetector()}
    for models in (together, alone):
        for name in alone:
            models[name].set_params(background=False, model_update_interval=200)
    found: dict[str, list[list[Finding]]] = {"together": [], "alone": []}
    for i in range(0, len(readings), 40):  # small batches of all four types: forests joined
        batch = readings[i : i + 40]
        shared = columnar(batch)
        found["together"].append([f for n in alone for f in together[n].detect(shared)])
        found["alone"].append([f for n in alone for f in alone[n].detect(columnar(batch))])
    assert found["together"] == found["alone"]
    assert sum(map(len, found["alone"])) > 0  # the comparison saw findings
    assert together["density"].state_bytes < alone["density"].state_bytes / 100


def test_density_scores_small_batches_directly_as_its_k_d_tree_does() -> None:
    rng = np.random.default_rng(9)
    detector = DensityDetector(background=False)
    fitted = detector._fit(rng.normal(size=(2048, 3)))
    probe = rng.normal(size=(BRUTE_ROWS + 40, 3)) * 3
    whole = detector._raw_scores(fitted, probe)  # past BRUTE_ROWS: the k-d tree
    small = np.concatenate(
        [detector._raw_scores(fitted, probe[i : i + 8]) for i in range(0, len(probe), 8)]
    )
    assert np.allclose(small, whole, atol=1e-9) and whole.max() > detector.eps


def test_novelty_component_runs_the_nab_detector_per_device_and_metric() -> None:
    temps = list(CLEAN)
    temps[200] += 10.0
    detector = NoveltyDetector(max_devices=5)
    findings = detector.process_batch(env_series(temps))
    assert (200, "outlier", "temperature") in {(f.seq, f.kind, f.metric) for f in findings}
    for d in range(20):
        detector.process_batch(env_series([4.0, 4.1], device=f"x{d}"))
    assert detector.devices_tracked == 5
    ensemble = EnsembleDetector(use_novelty=True)
    assert "novelty" in {d.name for d in ensemble.enabled()}
    assert any(f.seq == 200 for f in ensemble.process_batch(env_series(temps)))


def test_run_time_parameters_take_effect_and_are_checked() -> None:
    temps = list(CLEAN)
    temps[150] += 1.2  # about 12 spreads
    assert RobustZDetector().process_batch(env_series(temps))
    quiet = RobustZDetector().set_params(threshold=0.9)
    assert quiet.process_batch(env_series(temps)) == []
    with pytest.raises(ValueError, match=r"threshold=1\.5 is out of range: allowed 0 to 1"):
        quiet.set_params(threshold=1.5)
    assert quiet.threshold == 0.9
    with pytest.raises(ValueError, match="window_size=3 is out of range: allowed 10 to 10000"):
        RobustZDetector(window_size=3).process_batch(env_series(temps))
    with pytest.raises(ValueError, match="has no parameter colour"):
        EnsembleDetector().set_params(colour=1)
    ensemble = EnsembleDetector()
    ensemble.set_params(use_robust_z=False, use_shift=False, use_forest=False, use_density=False)
    assert ensemble.process_batch(env_series(temps)) == []


def test_components_share_rows_and_reset_rows_handed_to_new_devices() -> None:
    ensemble = EnsembleDetector(max_devices=3, use_forest=False, use_density=False)
    fleets = {id(d.fleet) for d in ensemble.components.values()}
    assert len(fleets) == 1
    ensemble.process_batch(env_series(list(CLEAN[:60] + 30.0), device="a"))  # a warm room
    ensemble.set_params(use_robust_z=False)
    for d in range(3):  # the third pushes "a" out and gets its row
        ensemble.process_batch(env_series(list(CLEAN[:3]), device=f"n{d}"))
    ensemble.set_params(use_robust_z=True)
    robust = ensemble.components["robust_z"]
    assert robust.devices_tracked == 3
    temps = list(CLEAN[:40])
    temps[30] += 10.0
    fresh = ensemble.process_batch(env_series(temps, device="n2")[3:])
    assert [f.seq for f in fresh] == [30]  # not judged against the warm room's stale state


def test_state_is_bounded() -> None:
    detector = RobustZDetector(max_devices=100)
    for start in range(0, 1000, 50):
        batch = [
            r for d in range(start, start + 50) for r in env_series([4.0, 4.1], device=f"dev{d}")
        ]
        detector.process_batch(batch)
    assert detector.devices_tracked == 100
    size = detector.state_bytes
    detector.process_batch([r for d in range(1000) for r in env_series([4.0], device=f"x{d}")])
    assert detector.state_bytes == size


def evaluate(findings: list[Finding], truths: list[Truth], grace: timedelta) -> dict:
    """Event-level recall per kind, and precision counting false-positive incidents."""
    by_device: dict[str, list[Truth]] = defaultdict(list)
    for t in truths:
        by_device[t.device_id].append(t)
    found: set[str] = set()
    false: list[Finding] = []
    for f in findings:
        hits = [t for t in by_device[f.device_id] if t.start <= f.ts <= t.end + grace]
        found.update(t.anomaly_id for t in hits)
        if not hits:
            false.append(f)
    incidents, last = 0, {}
    for f in sorted(false, key=lambda f: (f.device_id, f.ts)):
        if f.device_id not in last or f.ts - last[f.device_id] > timedelta(minutes=1):
            incidents += 1
        last[f.device_id] = f.ts
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in truths:
        per_kind[t.kind][0] += t.anomaly_id in found
        per_kind[t.kind][1] += 1
    recall = len(found) / len(truths)
    precision = len(found) / (len(found) + incidents)
    return {
        "recall": {k: hit / n for k, (hit, n) in per_kind.items()},
        "overall_recall": recall,
        "precision": precision,
        "f1": 2 * recall * precision / (recall + precision),
    }


def test_ensemble_recall_on_the_simulator() -> None:
    devices, rate = 300, 60.0  # every device reports every 5 s; 20 simulated minutes
    data = list(simulate(devices, rate, int(rate * 1200), seed=11, start=T0))
    readings = [r for r, _ in data]
    truths = [t for _, ts in data for t in ts]
    ensemble = EnsembleDetector()
    findings = [
        f
        for i in range(0, len(readings), 1000)
        for f in ensemble.process_batch(readings[i : i + 1000])
    ]
    figures = evaluate(findings, truths, timedelta(seconds=2 * devices / rate))
    assert figures["f1"] >= 0.95, figures
    assert min(figures["recall"].values()) >= 0.85, figures


def test_live_detector_single_reading_api() -> None:
    temps = list(CLEAN[:100])
    temps[99] += 10.0
    live = LiveAnomalyDetector()
    results = [live.process_data_point(r) for r in env_series(temps)]
    assert not any(r.is_anomaly for r in results[:99])
    last = results[-1]
    assert last.is_anomaly and last.score >= 0.1
    assert "temperature" in last.reason and "expected" in last.reason and "14" in last.reason
    live.set_params(anomaly_threshold=0.99)
    assert live.ensemble.anomaly_threshold == 0.99
