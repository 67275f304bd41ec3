"""Run the online detector over a NAB-format corpus and score it the way NAB does.

Each ``DIR/<category>/<file>.csv`` (``timestamp,value``) gets a fresh detector from one factory
(one configuration for every file) and is fed in row order, each row scored before it is learnt;
labels are read only afterwards, for scoring. Scores go to ``OUT/<category>/<file>.csv``.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from workbench.evaluation.nab_score import PROFILES, label_file, score_corpus
from workbench.models.univariate import UnivariateDetector


class OnlineDetector(Protocol):
    """What the runner needs: score a value, then learn it."""

    def score_learn_one(self, value: float, ts: datetime) -> float: ...


def read_series(path: Path) -> tuple[list[str], list[float]]:
    """A NAB data file's timestamps (as written) and values."""
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    return [r["timestamp"] for r in rows], [float(r["value"]) for r in rows]


def detect_file(
    path: Path, out_path: Path, detector: OnlineDetector
) -> tuple[list[datetime], list[float]]:
    """Score one file online (no look-ahead) and write ``timestamp,value,anomaly_score``."""
    stamps, values = read_series(path)
    times = [datetime.fromisoformat(s) for s in stamps]
    score = detector.score_learn_one
    scores = [score(v, t) for v, t in zip(values, times, strict=True)]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "value", "anomaly_score"])
        writer.writerows(zip(stamps, values, (f"{s:.6f}" for s in scores), strict=True))
    return times, scores


def load_windows(labels: Path) -> dict[str, list[tuple[datetime, datetime]]]:
    """NAB's ``combined_windows.json`` as ``{"<category>/<file>.csv": [(start, end), ...]}``."""
    raw = json.loads(labels.read_text())
    return {
        name: [(datetime.fromisoformat(a), datetime.fromisoformat(b)) for a, b in spans]
        for name, spans in raw.items()
    }


def run_nab(
    data_dir: Path,
    out_dir: Path,
    labels: Path | None = None,
    detector_factory: Callable[[], OnlineDetector] | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Detect on every file, write the scores, and NAB-score them when labels exist."""
    factory = detector_factory or UnivariateDetector
    labels = labels if labels is not None else data_dir.parent / "labels" / "combined_windows.json"
    paths = sorted(data_dir.glob("*/*.csv"))
    if not paths:
        raise FileNotFoundError(f"no <category>/<file>.csv under {data_dir}")
    series: dict[str, tuple[list[datetime], list[float]]] = {}
    rows = 0
    started = time.perf_counter()
    for n, path in enumerate(paths, 1):
        name = path.relative_to(data_dir).as_posix()
        t0 = time.perf_counter()
        series[name] = detect_file(path, out_dir / name, factory())
        rows += len(series[name][0])
        if progress:
            took = time.perf_counter() - t0
            progress(
                f"[{n}/{len(paths)}] {name}: {len(series[name][0]):,} rows in {took:.2f} s "
                f"({len(series[name][0]) / max(took, 1e-9):,.0f} rows/s)"
            )
    results: dict[str, Any] = {
        "data_dir": str(data_dir),
        "out_dir": str(out_dir),
        "files": len(paths),
        "rows": rows,
        "seconds": time.perf_counter() - started,
        "labels": None,
        "profiles": {},
    }
    if not labels.is_file():
        return results
    windows = load_windows(labels)
    scored = [label_file(name, *series[name], windows[name]) for name in series if name in windows]
    results["labels"] = str(labels)
    results["unlabelled"] = sorted(set(series) - set(windows))
    for profile_name, profile in PROFILES.items():
        s = score_corpus(scored, profile)
        results["profiles"][profile_name] = {
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


def format_nab(results: dict[str, Any]) -> str:
    """A plain-text summary: per-profile scores, then per-file counts (standard profile)."""
    lines = [
        f"{results['files']} files, {results['rows']:,} rows in {results['seconds']:.1f} s; "
        f"scores written to {results['out_dir']}"
    ]
    profiles = results["profiles"]
    if not profiles:
        lines.append("no labels found: not scored")
        return "\n".join(lines)
    lines.append(f"{'profile':<20} {'score':>7} {'threshold':>10} {'raw':>8}")
    for name, p in profiles.items():
        lines.append(f"{name:<20} {p['score']:7.1f} {p['threshold']:10.6f} {p['raw']:8.2f}")
    lines.append("")
    lines.append(
        f"{'file (standard profile)':<58} {'windows':>7} {'found':>5} {'FP':>4} {'raw':>7}"
    )
    for name, f in profiles["standard"]["files"].items():
        lines.append(
            f"{name:<58} {f['windows']:7d} {f['detected']:5d} {f['fp_rows']:4d} {f['raw']:7.2f}"
        )
    return "\n".join(lines)


def main(data_dir: Path, out_dir: Path, labels: Path | None = None, as_json: bool = False) -> int:
    """``workbench eval nab``: progress to stderr, the table (or JSON) to stdout; exit code."""
    results = run_nab(
        data_dir, out_dir, labels, progress=lambda m: print(m, file=sys.stderr, flush=True)
    )
    print(json.dumps(results, indent=2) if as_json else format_nab(results))
    return 0
