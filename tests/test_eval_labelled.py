"""`workbench eval labelled` on the boiler recording (tests/data/recordings): the live detection
stage finds the injected faults; the figures it prints are the ones a simple count over its output
and the labels gives; the label never reaches the detectors; through Kafka the figures are the
same."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

import pytest

from workbench.config import Settings
from workbench.evaluation.labelled import format_labelled
from workbench.evaluation.labelled_score import LabelledFile, event_scores, pointwise, runs

RECORDING = Path(__file__).parent / "data" / "recordings"
PROFILE = RECORDING / "boilers.toml"
FAULTS = {"boiler-01.csv": 2, "boiler-02.csv": 40, "boiler-03.csv": 60, "boiler-04.csv": 0}
"""Labelled rows per file: a spike, a stuck sensor, a level shift, and a boiler with no fault."""


def write_env_recording(directory: Path, rows: int = 60) -> Path:
    """A small labelled recording of the simulator's env_sensor type (the shipped profile), for
    runs that cannot switch profiles: columns as that profile's wire names them, one spike."""
    directory.mkdir(parents=True, exist_ok=True)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    with (directory / "env-7.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        columns = "ts seq lat lon firmware temperature humidity battery label"
        writer.writerow(columns.split())
        for i in range(rows):
            spike = i == rows - 10
            stamp = (start + timedelta(seconds=5 * i)).isoformat()
            temperature = 4.0 + (i % 3) / 10 + (30.0 if spike else 0.0)
            writer.writerow([stamp, i, 52.1, 4.3, "1.0.0", temperature, 60, 0.9, int(spike)])
    return directory


def _eval(data: Path, out: Path, *options: str) -> dict:
    run = subprocess.run(
        [
            *(sys.executable, "-m", "workbench.cli", "eval", "labelled", "--json"),
            *("--data", str(data), "--out", str(out), "--profiles", str(PROFILE)),
            *("--type", "boiler", "--time-column", "timestamp", "--label-column", "label"),
            *options,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("labelled-out")
    return _eval(RECORDING, out), out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _outputs(out: Path) -> dict[str, list[dict[str, str]]]:
    return {name: _rows(out / name) for name in FAULTS}


def test_every_input_row_gets_a_score_and_a_prediction(in_process) -> None:
    results, out = in_process
    for name, rows in _outputs(out).items():
        recorded = _rows(RECORDING / name)
        assert [r["timestamp"] for r in rows] == [r["timestamp"] for r in recorded]
        assert {r["pred"] for r in rows} <= {"0", "1"}
        assert all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    assert results["rows"] == 1440 and results["rows_not_readings"] == 0
    assert results["rows_refused"] == 0  # the profile refuses undeclared fields: no label was sent


def test_the_injected_faults_are_found(in_process) -> None:
    results, _ = in_process
    per_file = results["per_file"]
    for name, labelled in FAULTS.items():
        assert per_file[name]["labelled_rows"] == labelled
        assert per_file[name]["found_events"] == per_file[name]["events"] == (1 if labelled else 0)
    assert results["events"]["labelled_events"] == results["events"]["found_events"] == 3
    assert per_file["boiler-04.csv"]["predicted_rows"] == 0  # the clean boiler raises nothing


def _by_hand(out: Path) -> tuple[dict[str, float], dict[str, float]]:
    """Point-wise and event figures counted directly from the output and the labels."""
    tp = fp = fn = tn = 0
    events = found = predicted_runs = true_runs = 0
    delays: list[float] = []
    for name, rows in _outputs(out).items():
        labels = [int(r["label"]) for r in _rows(RECORDING / name)]
        preds = [int(r["pred"]) for r in rows]
        times = [datetime.fromisoformat(r["timestamp"]) for r in rows]
        for label, pred in zip(labels, preds, strict=True):
            tp += label and pred
            fp += pred and not label
            fn += label and not pred
            tn += not label and not pred
        in_event = False
        for i, label in enumerate(labels):
            if label and not in_event:
                events += 1
                end = next((j for j in range(i, len(labels)) if not labels[j]), len(labels))
                hits = [j for j in range(i, end) if preds[j]]
                if hits:
                    found += 1
                    delays.append((times[hits[0]] - times[i]).total_seconds())
            in_event = bool(label)
        in_run = False
        for i, pred in enumerate(preds):
            if pred and not in_run:
                predicted_runs += 1
                end = next((j for j in range(i, len(preds)) if not preds[j]), len(preds))
                true_runs += any(labels[i:end])
            in_run = bool(pred)
    points = {
        "true_positive_rows": tp,
        "false_positive_rows": fp,
        "false_negative_rows": fn,
        "true_negative_rows": tn,
        "precision_pct": 100 * tp / (tp + fp),
        "recall_pct": 100 * tp / (tp + fn),
        "f1_pct": 100 * 2 * tp / (2 * tp + fp + fn),
        "false_alarm_rate_pct": 100 * fp / (fp + tn),
        "missed_alarm_rate_pct": 100 * fn / (fn + tp),
    }
    event = {
        "labelled_events": events,
        "found_events": found,
        "predicted_events": predicted_runs,
        "true_predicted_events": true_runs,
        "precision_pct": 100 * true_runs / predicted_runs,
        "recall_pct": 100 * found / events,
        "delay_median_s": median(delays),
        "delay_max_s": max(delays),
    }
    return points, event


def test_the_printed_figures_are_the_ones_the_output_and_the_labels_give(in_process) -> None:
    results, out = in_process
    points, events = _by_hand(out)
    for key, value in points.items():
        assert results["pointwise"][key] == pytest.approx(value, abs=1e-3), key
    for key, value in events.items():
        assert results["events"][key] == pytest.approx(value, abs=1e-3), key
    assert points["true_positive_rows"] + points["false_negative_rows"] == sum(FAULTS.values())
    assert sum(v for k, v in points.items() if k.endswith("_rows")) == results["rows"]


def test_the_label_never_reaches_the_detectors(in_process, tmp_path: Path) -> None:
    _, out = in_process
    flipped = tmp_path / "flipped"
    for name in FAULTS:
        rows = _rows(RECORDING / name)
        for row in rows:
            row["label"] = "0" if row["label"] == "1" else "1"
        (flipped / name).parent.mkdir(exist_ok=True)
        with (flipped / name).open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    shutil.copy(PROFILE, flipped / PROFILE.name)  # not a recording: left alone
    results = _eval(flipped, tmp_path / "out")
    assert results["files"] == 4
    for name in FAULTS:  # other labels, the same scores and predictions
        assert (tmp_path / "out" / name).read_text() == (out / name).read_text()


def test_the_text_report_gives_every_figure_with_its_unit(in_process) -> None:
    results, _ = in_process
    text = format_labelled(results)
    p, e = results["pointwise"], results["events"]
    assert f"precision          {p['precision_pct']:>7.1f} %" in text
    assert f"false-alarm rate   {p['false_alarm_rate_pct']:>7.1f} %" in text
    assert f"missed-alarm rate  {p['missed_alarm_rate_pct']:>7.1f} %" in text
    assert f"({e['found_events']} of 3 events found)" in text
    assert f"detection delay    median {e['delay_median_s']:.1f} s" in text
    assert "rows/s" in text


@pytest.mark.kafka
def test_through_kafka_the_figures_are_the_same(in_process, kafka: Settings, tmp_path) -> None:
    results, out = in_process
    through = _eval(RECORDING, tmp_path, "--through-kafka", "--bootstrap-servers", kafka.bootstrap)
    assert through["pointwise"] == results["pointwise"]
    assert through["events"] == results["events"]
    assert through["alerts"] == results["alerts"]
    for name in FAULTS:
        assert (tmp_path / name).read_text() == (out / name).read_text()
    kafka_figures = through["through_kafka"]
    assert kafka_figures["rows"] == 1440 and kafka_figures["rows_per_s"] > 0
    assert results["through_kafka"] is None


def test_runs_and_scores_of_a_small_case_by_hand() -> None:
    t = [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=10 * i) for i in range(8)]
    f = LabelledFile(labels=[0, 1, 1, 1, 0, 0, 1, 0], preds=[0, 0, 0, 1, 1, 0, 0, 1], times=t)
    assert runs(f.labels) == [(1, 3), (6, 6)] and runs(f.preds) == [(3, 4), (7, 7)]
    points = pointwise([f])
    assert (points.true_positive, points.false_positive) == (1, 2)
    assert (points.false_negative, points.true_negative) == (3, 2)
    assert points.precision == pytest.approx(1 / 3) and points.recall == pytest.approx(1 / 4)
    assert points.false_alarm_rate == pytest.approx(2 / 4)
    assert points.missed_alarm_rate == pytest.approx(3 / 4)
    events = event_scores([f])
    assert (events.overall.truths, events.overall.found) == (2, 1)
    assert (events.overall.alerts, events.overall.true_alerts) == (2, 1)
    assert events.delays_s == [20.0]  # the first event starts at row 1, found at row 3
