"""``workbench eval nab``: the live detection stage over a NAB-format corpus, scored as NAB does.

The product's detection is what is measured, not a NAB-only detector: each
``DIR/<category>/<file>.csv`` (``timestamp,value``) is one device with a one-metric type of its
own, drafted by the rules of ``workbench profiles infer`` (a gauge ``value`` over the widened
observed range, reporting at the median gap; no labels are read) and written to
``OUT/nab-profiles.toml``. The rows go through the wire format and the validator, then through
:func:`~workbench.evaluation.labelled.detect_recordings`, the live stage with the live defaults,
as ``workbench eval labelled`` runs it. A row's anomaly score is the ensemble's score when it
reported the reading, else 0; ``OUT/<category>/<file>.csv`` holds them. Labels are read only
afterwards, for scoring. The process must detect with the drafted profiles
(:func:`nab_profiles_file` then :func:`~workbench.profiles.active.activate`, as the CLI does);
:func:`run_nab_apart` runs the command in a process of its own (for a notebook's kernel, which
detects with the fleet's profiles).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.evaluation.nab_score import PROFILES, label_file, score_corpus
from workbench.profiles.guess import UNKNOWN_UNIT, interval, steps, widen
from workbench.profiles.model import DeviceType, Mapping, Metric, Profiles
from workbench.profiles.write import to_toml
from workbench.recordings.files import device_id_for

PROFILE_FILE = "nab-profiles.toml"
"""The drafted profiles, beside the scores."""
METRIC = "value"
_TYPE_CHARS = re.compile(r"[^a-z0-9]+")


def corpus_files(data_dir: Path) -> list[Path]:
    """The corpus's ``<category>/<file>.csv``, sorted; FileNotFoundError when there are none."""
    paths = sorted(data_dir.glob("*/*.csv"))
    if not paths:
        raise FileNotFoundError(f"no <category>/<file>.csv under {data_dir}")
    return paths


def read_series(path: Path) -> tuple[list[str], list[float]]:
    """A NAB data file's timestamps (as written) and values."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["timestamp"] for r in rows], [float(r["value"]) for r in rows]


def _type_name(path: Path, taken: set[str]) -> str:
    """A profile type name from a file name (``Twitter_volume_AAPL`` → ``twitter_volume_aapl``)."""
    base = _TYPE_CHARS.sub("_", path.stem.lower()).strip("_") or "series"
    if not base[0].isalpha():
        base = f"s_{base}"
    name, n = base[:32], 2
    while name in taken:
        suffix = f"_{n}"
        name, n = base[: 32 - len(suffix)] + suffix, n + 1
    taken.add(name)
    return name


def draft_type(name: str, stamps: list[str], values: list[float]) -> DeviceType:
    """The one-metric type ``profiles infer`` would propose for this series."""
    seconds = [datetime.fromisoformat(s).timestamp() for s in stamps]
    gaps = [g for g in steps([seconds]) if g > 0]
    low, high = widen(min(values), max(values))
    metric = Metric(METRIC, UNKNOWN_UNIT, low, high, description="the series' value")
    return DeviceType(name, (metric,), interval(gaps) if gaps else 60.0, "ignore")


def draft_profiles(paths: list[Path]) -> tuple[Profiles, dict[Path, str]]:
    """One type per file, and each file's type."""
    taken: set[str] = set()
    types, of_file = [], {}
    for path in paths:
        of_file[path] = _type_name(path, taken)
        types.append(draft_type(of_file[path], *read_series(path)))
    return Profiles(tuple(types), Mapping(time="timestamp")), of_file


def nab_profiles_file(data_dir: Path, out_dir: Path) -> Path:
    """Draft the corpus's profiles into ``OUT/nab-profiles.toml``; its path."""
    profiles, _ = draft_profiles(corpus_files(data_dir))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PROFILE_FILE
    header = (
        "# Drafted by workbench eval nab: one type per file (named after it), by the rules of\n"
        "# workbench profiles infer: a gauge over the widened observed range, reporting at the\n"
        "# median gap between rows.\n"
    )
    path.write_text(header + to_toml(profiles), encoding="utf-8")
    return path


def _readings(paths: list[Path], of_file: dict[Path, str]) -> dict[Path, list[Any]]:
    """Each file's rows as readings, through the wire format and the live validator."""
    from workbench.explore.recent import Record, decode_readings
    from workbench.profiles.active import active
    from workbench.recordings.convert import RecordingFormat, RowConverter
    from workbench.recordings.timeline import Skipped, file_rows

    profiles = active().profiles
    out: dict[Path, list[Any]] = {}
    for path in paths:
        device = device_id_for(path)
        converter = RowConverter(RecordingFormat(profiles, of_file[path], "timestamp"))
        skipped = Skipped()
        rows = list(file_rows(path, device, converter, skipped))
        records = [Record(0, i, 0, device.encode(), converter.wire(c)) for i, c in enumerate(rows)]
        accepted, rejected = decode_readings(records)
        problems = skipped.reasons + [r.reason for r in rejected]
        if problems:
            raise ValueError(f"{path}: rows that are not readings: {'; '.join(problems[:3])}")
        out[path] = accepted
    return out


def load_windows(labels: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """NAB's ``combined_windows.json`` as ``{"<category>/<file>.csv": [(start, end), ...]}``."""
    raw = json.loads(labels.read_text())
    return {
        name: [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in spans]
        for name, spans in raw.items()
    }


def _write_scores(path: Path, stamps: list[str], values: list[float], scores: list[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        writer.writerows(zip(stamps, values, (f"{s:.6f}" for s in scores), strict=True))


def run_nab(
    data_dir: Path,
    out_dir: Path,
    labels: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Detect on every file with the live stage, write the scores, NAB-score them when labels
    exist. The process must run on the corpus's drafted profiles (see the module's docstring)."""
    from workbench.evaluation.labelled import detect_recordings

    say = progress or (lambda _m: None)
    labels = labels if labels is not None else data_dir.parent / "labels" / "combined_windows.json"
    paths = corpus_files(data_dir)
    _, of_file = draft_profiles(paths)
    readings = _readings(paths, of_file)
    rows = sum(len(r) for r in readings.values())
    say(f"{len(paths)} files, {rows:,} readings: the live detection stage, in time order")
    started = time.perf_counter()
    found, alerts, _ = asyncio.run(detect_recordings(list(readings.values())))
    seconds = time.perf_counter() - started
    say(f"detected in {seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} readings/s)")
    series: dict[str, tuple[list[datetime], list[float]]] = {}
    for path, device_readings in readings.items():
        name = path.relative_to(data_dir).as_posix()
        stamps, values = read_series(path)
        scores = [found.get((r.device_id, r.ts), 0.0) for r in device_readings]
        _write_scores(out_dir / name, stamps, values, scores)
        series[name] = ([datetime.fromisoformat(s) for s in stamps], scores)
    results: dict[str, Any] = {
        "data_dir": str(data_dir),
        "out_dir": str(out_dir),
        "profiles": str(out_dir / PROFILE_FILE),
        "files": len(paths),
        "rows": rows,
        "alerts": len(alerts),
        "seconds": round(seconds, 3),
        "rows_per_s": round(rows / seconds, 1) if seconds > 0 else None,
        "labels": None,
        "scores": {},
    }
    if not labels.is_file():
        return results
    windows = load_windows(labels)
    scored = [label_file(name, *series[name], windows[name]) for name in series if name in windows]
    results["labels"] = str(labels)
    results["unlabelled"] = sorted(set(series) - set(windows))
    for profile_name, profile in PROFILES.items():
        s = score_corpus(scored, profile)
        results["scores"][profile_name] = {
            "score": s.normalized,
            "threshold": s.threshold,
            "raw": s.raw,
            "null": s.null,
            "perfect": s.perfect,
            "files": {
                name: {
                    "raw": f.raw,
                    "windows": f.windows,
                    "detected": f.detected,
                    "fp_rows": f.fp_rows,
                }
                for name, f in s.files.items()
            },
        }
    return results


def run_nab_apart(
    data_dir: Path,
    out_dir: Path,
    labels: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """:func:`run_nab` as ``workbench eval nab --json`` in a child process (a process detects
    with one set of profiles); its progress lines go to ``progress``."""
    command = [sys.executable, "-m", "workbench.cli", "eval", "nab", "--data", str(data_dir)]
    command += ["--out", str(out_dir), "--json"]
    if labels is not None:
        command += ["--labels", str(labels)]
    env = {k: v for k, v in os.environ.items() if k != "WORKBENCH_PROFILES"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as child:
        assert child.stderr is not None and child.stdout is not None
        said = []
        for line in child.stderr:
            said.append(line.rstrip())
            if progress:
                progress(said[-1])
        out = child.stdout.read()
    if child.returncode != 0:
        raise RuntimeError(f"workbench eval nab failed ({child.returncode}): {said[-5:]}")
    return json.loads(out)


def format_nab(results: dict[str, Any]) -> str:
    """A plain-text summary: per-profile scores, then per-file counts (standard profile)."""
    lines = [
        f"{results['files']} files, {results['rows']:,} rows, {results['alerts']:,} alerts; "
        f"detection {results['seconds']:.1f} s ({results['rows_per_s']:,.0f} rows/s); "
        f"scores written to {results['out_dir']}, the drafted profiles to {results['profiles']}"
    ]
    scores = results["scores"]
    if not scores:
        lines.append("no labels found: not scored")
        return "\n".join(lines)
    lines.append(f"{'NAB profile':<20} {'score':>7} {'threshold':>10} {'raw':>8}")
    for name, p in scores.items():
        lines.append(f"{name:<20} {p['score']:7.1f} {p['threshold']:10.6f} {p['raw']:8.2f}")
    lines.append("")
    lines.append(
        f"{'file (standard profile)':<58} {'windows':>7} {'found':>5} {'FP':>4} {'raw':>7}"
    )
    for name, f in scores["standard"]["files"].items():
        lines.append(
            f"{name:<58} {f['windows']:7d} {f['detected']:5d} {f['fp_rows']:4d} {f['raw']:7.2f}"
        )
    return "\n".join(lines)


def main(data_dir: Path, out_dir: Path, labels: Path | None = None, as_json: bool = False) -> int:
    """``workbench eval nab``: draft the profiles, run on them; progress to stderr, the table (or
    JSON) to stdout; exit code. A process that already detects with other profiles (the CLI
    called from Python) runs it in a child."""
    from workbench.profiles.active import activate

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    drafted = nab_profiles_file(data_dir, out_dir)
    try:
        activate(drafted)
    except RuntimeError:
        results = run_nab_apart(data_dir, out_dir, labels, progress=say)
    else:
        results = run_nab(data_dir, out_dir, labels, progress=say)
    print(json.dumps(results, indent=2) if as_json else format_nab(results))
    return 0
