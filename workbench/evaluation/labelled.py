"""``workbench eval labelled``: the live detection stage on labelled recordings, scored by row and
by event.

Each file is one device (its id from the file name). Its rows become readings as ``workbench
replay`` makes them (the profile's wire format, validated as the live source validates; the label
column is not declared, so no detector sees it). The detection stage the live pipeline builds
(:func:`~workbench.streams.detect.live_detection_stage`, its defaults, nothing tuned per dataset)
takes them in time order, ``BATCH_ROWS`` a batch, with the fleet models refitted in the
foreground. With ``through_kafka`` the readings first go through a real topic and the live
source, and must come back as they were sent; detection then sees the same readings in the same
batches, so the figures are the same either way.

``OUT/<relative path>.csv`` has one row per input row: ``timestamp`` as written, ``score`` (the
ensemble's score when it reported the reading, 0 when it did not; empty for a row that was no
reading) and ``pred``: 1 while the device had an open alert, from the incident's first anomalous
reading until the alert manager closed it (``merge_gap`` after its last).
"""

from __future__ import annotations

import asyncio
import csv
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from workbench.alerts.model import Alert
from workbench.config import Settings
from workbench.evaluation.labelled_score import LabelledFile, event_scores, figures
from workbench.explore.recent import Record, decode_readings
from workbench.models.base import Finding
from workbench.profiles.active import active
from workbench.recordings.convert import Converted, RecordingFormat, RowConverter
from workbench.recordings.files import Row, devices_by_file, recording_files
from workbench.recordings.timeline import Skipped, file_rows, in_time_order
from workbench.schema import Reading
from workbench.streams.detect import BatchDetector, live_detection_stage
from workbench.streams.validate import ReadingBatch, ReadingValidator

BATCH_ROWS = 1_000
"""Readings per batch handed to the detection stage."""
_LABELS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}


@dataclass
class _File:
    """One recording file: its rows, their labels, and the reading each row became (or None)."""

    name: str
    """Its path below the data directory."""
    device_id: str
    rows: list[Row]
    labels: list[int]
    readings: list[Reading | None]


class _Scored:
    """The stage's detector, noting the score of every finding by (device, time)."""

    def __init__(self, detector: BatchDetector) -> None:
        self.detector = detector
        self.scores: dict[tuple[str, datetime], float] = {}

    def _note(self, findings: list[Finding]) -> list[Finding]:
        for f in findings:
            key = (f.device_id, f.ts)
            self.scores[key] = max(f.score, self.scores.get(key, 0.0))
        return findings

    def process_batch(self, readings: list[Reading]) -> list[Finding]:
        return self._note(self.detector.process_batch(readings))

    def silent_findings(self, now: datetime) -> list[Finding]:
        return self._note(self.detector.silent_findings(now))


def _label(row: Row, column: str) -> int:
    value = (row.fields or {}).get(column)
    label = _LABELS.get(str(value).strip().lower())
    if label is None:
        raise ValueError(f"{row.where}: label {value!r} in column {column!r} is not 0 or 1")
    return label


def _load(
    path: Path,
    name: str,
    device_id: str,
    converter: RowConverter,
    label_column: str,
    validator: ReadingValidator,
    skipped: Skipped,
    refused: Skipped,
) -> _File:
    rows: list[Row] = []
    converted: list[Converted | None] = []
    for item in file_rows(path, device_id, converter, skipped):
        rows.append(item.row)
        converted.append(item if isinstance(item, Converted) else None)
    labels = [_label(row, label_column) for row in rows]
    records = [
        Record(0, i, 0, c.device_id.encode(), converter.wire(c))
        for i, c in enumerate(converted)
        if c is not None
    ]
    accepted, rejected = decode_readings(records, validator=validator)
    for r in rejected:
        refused.add(f"{rows[r.offset].where}: {r.reason}")
    refused_at = {r.offset for r in rejected}
    valid = iter(accepted)
    readings = [
        next(valid) if c is not None and i not in refused_at else None
        for i, c in enumerate(converted)
    ]
    return _File(name, device_id, rows, labels, readings)


async def detect_recordings(
    devices: Sequence[list[Reading]],
) -> tuple[dict[tuple[str, datetime], float], list[Alert], timedelta]:
    """The live detection stage over every device's readings in time order: the findings'
    scores, every alert's last state (all closed at the end), and the stage's merge gap."""
    stage = live_detection_stage(background_refits=False)
    scored = _Scored(stage.detector)
    stage.detector = scored
    alerts: dict[str, Alert] = {}
    stage.listeners.append(lambda changed: alerts.update((a.alert_id, a) for a in changed))
    ordered = list(in_time_order(devices, lambda r: r.ts))
    watermark: datetime | None = None
    try:
        for i in range(0, len(ordered), BATCH_ROWS):
            batch = ordered[i : i + BATCH_ROWS]
            latest = max(r.ts for r in batch)
            watermark = latest if watermark is None else max(watermark, latest)
            await stage(ReadingBatch(batch, [0] * len(batch), watermark=watermark))
        if watermark is not None:  # the data has ended: every incident closes
            end = watermark + stage.manager.merge_gap + timedelta(seconds=1)
            closed = await stage.between_batches(lambda: stage.manager.process([], now=end))
            alerts.update((a.alert_id, a) for a in closed)
    finally:
        stage.close()
    return scored.scores, list(alerts.values()), stage.manager.merge_gap


def _predictions(
    f: _File,
    scores: dict[tuple[str, datetime], float],
    open_spans: dict[str, list[tuple[datetime, datetime]]],
) -> tuple[list[float | None], list[int]]:
    """Each row's score (None: no reading) and pred (1: its device had an open alert)."""
    spans = open_spans.get(f.device_id, [])
    row_scores: list[float | None] = []
    preds: list[int] = []
    for reading in f.readings:
        if reading is None:
            row_scores.append(None)
            preds.append(0)
            continue
        row_scores.append(scores.get((reading.device_id, reading.ts), 0.0))
        preds.append(int(any(start <= reading.ts <= end for start, end in spans)))
    return row_scores, preds


def _write(
    out: Path, f: _File, time_column: str, row_scores: list[float | None], preds: list[int]
) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "score", "pred"])
        for row, score, pred in zip(f.rows, row_scores, preds, strict=True):
            stamp = (row.fields or {}).get(time_column, "")
            writer.writerow([stamp, "" if score is None else f"{score:.6f}", pred])


def evaluate_labelled(
    data_dir: Path,
    form: RecordingFormat,
    label_column: str,
    out_dir: Path,
    settings: Settings | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Detect on every file of ``data_dir`` (through Kafka when ``settings`` are given), write
    the per-row predictions under ``out_dir`` and score them against the labels."""
    if form.device_column is not None:
        raise ValueError("a labelled evaluation takes each file as one device (no device column)")
    if form.profiles is not active().profiles:
        raise ValueError("the recording's profiles must be the ones the process detects with")
    files = recording_files(data_dir)
    converter = RowConverter(form)
    validator = ReadingValidator()
    skipped, refused = Skipped(), Skipped()
    loaded = [
        _load(
            path,
            path.relative_to(data_dir).as_posix() if data_dir.is_dir() else path.name,
            device,
            converter,
            label_column,
            validator,
            skipped,
            refused,
        )
        for path, device in devices_by_file(files).items()
    ]
    devices = [[r for r in f.readings if r is not None] for f in loaded]
    kafka = None
    if settings is not None:
        from workbench.evaluation.labelled_kafka import through_kafka

        received = asyncio.run(through_kafka(settings, files, form, progress))
        came_back = [received.readings.get(f.device_id, []) for f in loaded]
        for f, sent, back in zip(loaded, devices, came_back, strict=True):
            if back != sent:
                raise RuntimeError(
                    f"{f.name}: {len(sent):,} readings sent, {len(back):,} came back from Kafka, "
                    "not the same"
                )
        devices = came_back
        kafka = {"rows": received.rows, "seconds": round(received.seconds, 3)}
        kafka["rows_per_s"] = round(received.rows_per_s, 1)
    started = time.perf_counter()
    scores, alerts, merge_gap = asyncio.run(detect_recordings(devices))
    seconds = time.perf_counter() - started
    open_spans: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    for a in alerts:
        open_spans[a.device_id].append((a.first_seen, a.last_seen + merge_gap))
    labelled: list[LabelledFile] = []
    per_file: dict[str, dict[str, int]] = {}
    for f in loaded:
        row_scores, preds = _predictions(f, scores, open_spans)
        _write((out_dir / f.name).with_suffix(".csv"), f, form.time_column, row_scores, preds)
        times = [None if r is None else r.ts for r in f.readings]
        labelled.append(LabelledFile(f.labels, preds, times))
        events = event_scores([labelled[-1]]).overall
        per_file[f.name] = {
            "rows": len(f.rows),
            "labelled_rows": sum(f.labels),
            "predicted_rows": sum(preds),
            "events": events.truths,
            "found_events": events.found,
        }
    rows = sum(len(f.rows) for f in loaded)
    return {
        "data_dir": str(data_dir),
        "out_dir": str(out_dir),
        "files": len(loaded),
        "rows": rows,
        "rows_not_readings": skipped.count,
        "rows_refused": refused.count,
        "problems": skipped.reasons + refused.reasons,
        "alerts": len(alerts),
        "detection_seconds": round(seconds, 3),
        "detection_rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
        "through_kafka": kafka,
        **figures(labelled),
        "per_file": per_file,
    }


def _figure(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:,.1f} {unit}"


def format_labelled(results: dict[str, Any]) -> str:
    """The figures as text, each with its unit."""
    p, e = results["pointwise"], results["events"]
    lines = [
        f"{results['files']} files, {results['rows']:,} rows ({results['rows_not_readings']:,} "
        f"not readings, {results['rows_refused']:,} refused by the validator) · "
        f"{results['alerts']:,} alerts · detection {results['detection_seconds']:.1f} s "
        f"({_figure(results['detection_rows_per_s'], 'rows/s')})",
    ]
    if results["through_kafka"] is not None:
        k = results["through_kafka"]
        lines.append(
            f"through Kafka: {k['rows']:,} rows in {k['seconds']:.1f} s ({k['rows_per_s']:,.0f} "
            "rows/s, replay → topic → live source)"
        )
    lines += [f"  {problem}" for problem in results["problems"]]
    lines += [
        f"predictions per row written to {results['out_dir']}",
        "",
        f"point-wise: {p['rows']:,} rows, {p['labelled_rows']:,} labelled 1, "
        f"{p['predicted_rows']:,} predicted 1",
        f"  precision          {_figure(p['precision_pct'], '%'):>9}  "
        f"({p['true_positive_rows']:,} of {p['predicted_rows']:,} predicted rows are labelled)",
        f"  recall             {_figure(p['recall_pct'], '%'):>9}  "
        f"({p['true_positive_rows']:,} of {p['labelled_rows']:,} labelled rows are predicted)",
        f"  F1                 {_figure(p['f1_pct'], '%'):>9}",
        f"  false-alarm rate   {_figure(p['false_alarm_rate_pct'], '%'):>9}  "
        f"({p['false_positive_rows']:,} of {p['false_positive_rows'] + p['true_negative_rows']:,}"
        " normal rows predicted)",
        f"  missed-alarm rate  {_figure(p['missed_alarm_rate_pct'], '%'):>9}  "
        f"({p['false_negative_rows']:,} of {p['labelled_rows']:,} labelled rows not predicted)",
        "events (runs of label 1):",
        f"  precision          {_figure(e['precision_pct'], '%'):>9}  "
        f"({e['true_predicted_events']:,} of {e['predicted_events']:,} predicted events overlap "
        "an event)",
        f"  recall             {_figure(e['recall_pct'], '%'):>9}  "
        f"({e['found_events']:,} of {e['labelled_events']:,} events found)",
        f"  F1                 {_figure(e['f1_pct'], '%'):>9}",
        f"  detection delay    median {_figure(e['delay_median_s'], 's')}, "
        f"p95 {_figure(e['delay_p95_s'], 's')}, max {_figure(e['delay_max_s'], 's')}",
    ]
    return "\n".join(lines)


def main(
    data_dir: Path,
    form: RecordingFormat,
    label_column: str,
    out_dir: Path,
    settings: Settings | None,
    as_json: bool,
) -> int:
    """``workbench eval labelled``: progress to stderr, the figures (or JSON) to stdout."""
    say = (lambda _m: None) if as_json else lambda m: print(m, file=sys.stderr, flush=True)
    results = evaluate_labelled(data_dir, form, label_column, out_dir, settings, say)
    print(json.dumps(results, indent=2) if as_json else format_labelled(results))
    return 0
