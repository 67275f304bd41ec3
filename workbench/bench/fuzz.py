"""``workbench bench fuzz``: hostile readings through the real pipeline on real Kafka.

The records come from ``workbench.bench.hostile`` (seeded families of malformed or hostile
records, mixed with valid simulator readings); each carries its family and case number in
headers. They are produced to a fresh topic and consumed by the live pipeline (source → validation
→ dead letters → detection with the ensemble → alerts). Then the dead-letter topic is read back to
check that every hostile record is there once, with a reason and its original bytes, that every
valid reading went through detection, and that the pipeline never stopped.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from workbench.alerts.publish import AlertPublisher
from workbench.bench.hostile import (
    CASE_HEADER,
    FAMILIES,
    FAMILY_HEADER,
    VALID,
    VALID_EDGE,
    FuzzRecord,
    generate,
)
from workbench.bench.ingest import peak_rss_mb
from workbench.config import Settings
from workbench.explore.recent import Record, read_recent
from workbench.streams.clients import RecordBatch, deliver, make_producer
from workbench.streams.deadletter import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON
from workbench.streams.detect import live_detection_stage
from workbench.streams.source import from_kafka_readings
from workbench.streams.topics import ensure_topics
from workbench.streams.validate import ReadingBatch, ReadingValidator

STALL_S = 60.0
"""The pipeline is declared stuck when it has handled nothing new for this long."""
READ_BACK_S = 600.0
"""Longest wait for a topic to be read back."""


# -- the campaign ------------------------------------------------------------------------------


@dataclass
class PipelineRun:
    """What the live pipeline did with the campaign's records."""

    processed: Counter[tuple[str, int]]
    """(device_id, seq) of each reading detection processed → how many times."""
    alive: bool
    """The source was still consuming when every record had been handled."""
    stalled: bool
    seconds: float
    """First records polled → last batch handled, s (the consumer group's join is not timed)."""
    status: str
    errors: int
    last_error: str | None
    findings: int
    alerts: int


@dataclass
class DeadLetter:
    """One record read back from the dead-letter topic."""

    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes
    reason: str


@dataclass
class Tally:
    """Per-family outcome of the campaign."""

    records: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    missing: int = 0
    processed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)


_DETAIL = re.compile(
    r"[+-]?\d{4,}-\d\d-\d\d[T ][\d:.]+(?:[+-]\d\d:\d\d|Z)?|'[^']*'|\"[^\"]*\""
    r"|(?<![\w–-])\d[\d,.]*(?![\w–])"
)


def reason_kind(reason: str) -> str:
    """A dead-letter reason without its particulars (values, times, positions), for counting."""
    return _DETAIL.sub("…", reason)[:120]


def tally(
    records: list[FuzzRecord],
    positions: dict[tuple[int, int], int],
    deadletters: list[DeadLetter],
    processed: Counter[tuple[str, int]],
) -> dict[str, object]:
    """Check the campaign's outcome: which records were dead-lettered (once, with a reason, byte
    for byte), which readings detection processed, what is missing and what is extra."""
    families = {name: Tally() for name in (VALID, VALID_EDGE, *FAMILIES)}
    copies: Counter[int] = Counter()
    problems = Counter({"without_reason": 0, "bytes_changed": 0, "unknown_origin": 0})
    for letter in deadletters:
        case = positions.get((letter.partition, letter.offset))  # type: ignore[arg-type]
        if case is None:
            problems["unknown_origin"] += 1
            continue
        copies[case] += 1
        record = records[case]
        if not letter.reason.strip():
            problems["without_reason"] += 1
        if (letter.key, letter.value) != (record.key, record.value or b""):
            problems["bytes_changed"] += 1
        if copies[case] == 1:
            families[record.family].reasons[reason_kind(letter.reason)] += 1
    owner = {r.reading: r for r in records if r.reading is not None}
    unattributed = 0
    for identity, times in processed.items():
        record = owner.get(identity)
        if record is None:
            unattributed += times
            continue
        families[record.family].processed += 1
    for case, record in enumerate(records):
        t = families[record.family]
        t.records += 1
        if copies[case]:
            t.dead_lettered += 1
            t.duplicates += copies[case] - 1
        elif record.hostile or processed[record.reading] == 0:  # type: ignore[index]
            t.missing += 1
    valid_duplicates = sum(
        max(0, processed[r.reading] - 1)  # type: ignore[index]
        for r in records
        if not r.hostile
    )
    hostile = [t for name, t in families.items() if name in FAMILIES]
    valid = [families[VALID], families[VALID_EDGE]]
    return {
        "families": {
            name: {
                "records": t.records,
                "dead_lettered": t.dead_lettered,
                "duplicates": t.duplicates,
                "missing": t.missing,
                "processed": t.processed,
                "top_reasons": t.reasons.most_common(3),
            }
            for name, t in families.items()
        },
        "hostile_missing": sum(t.missing for t in hostile),
        "hostile_processed": sum(t.processed for t in hostile) + unattributed,
        "valid_missing": sum(t.missing for t in valid),
        "valid_dead_lettered": sum(t.dead_lettered for t in valid),
        "duplicates": {
            "dead_letters": sum(t.duplicates for t in families.values()),
            "readings_processed": valid_duplicates,
        },
        "dead_letter_problems": dict(problems),
    }


def _read_all(settings: Settings, topic: str) -> list[Record]:
    return read_recent(settings, topic, limit=sys.maxsize, timeout_s=READ_BACK_S)


def _positions(settings: Settings, topic: str) -> dict[tuple[int, int], int]:
    """(partition, offset) → case number of every record produced to the readings topic."""
    return {
        (r.partition, r.offset): int(dict(r.headers)[CASE_HEADER])
        for r in _read_all(settings, topic)
    }


def _deadletters(settings: Settings, topic: str) -> list[DeadLetter]:
    out = []
    for r in _read_all(settings, topic):
        headers = dict(r.headers)
        partition, offset = headers.get(HEADER_PARTITION), headers.get(HEADER_OFFSET)
        out.append(
            DeadLetter(
                None if partition is None else int(partition),
                None if offset is None else int(offset),
                r.key,
                r.value or b"",
                headers.get(HEADER_REASON, b"").decode(errors="replace"),
            )
        )
    return out


class _ClockedValidator(ReadingValidator):
    """The live validator, noting when the first records arrived (where the rate is timed from)."""

    first_at: float | None = None
    """Unix time (s) of the first batch's validation."""

    def __call__(self, batch: RecordBatch) -> ReadingBatch:
        self.first_at = self.first_at or time.time()
        return super().__call__(batch)


async def _run_pipeline(settings: Settings, topics: dict[str, str], count: int) -> PipelineRun:
    """The live pipeline's wiring (source → dead letters, detection → alerts) on the topics,
    until every record is handled, the source stops, or nothing moves for ``STALL_S``."""
    producer = make_producer(settings, client_id="workbench-fuzz-alerts")
    stage = live_detection_stage(AlertPublisher(producer, topics["alerts"]))
    clocked = _ClockedValidator()
    source = from_kafka_readings(
        settings,
        topic=topics["readings"],
        group_id=f"fuzz-{uuid.uuid4().hex[:8]}",
        validator=clocked,
        deadletter_topic=topics["deadletter"],
    )
    processed: Counter[tuple[str, int]] = Counter()

    async def detect(batch: ReadingBatch) -> None:
        await stage(batch)
        processed.update((r.device_id, r.seq) for r in batch.readings)

    source.sink(detect)
    source.start()
    moved, seen = time.monotonic(), 0
    try:
        while seen < count and not source.finished.is_set():
            await asyncio.sleep(0.05)
            handled = source.metrics.total + source.metrics.dead_lettered
            if handled > seen:
                moved, seen = time.monotonic(), handled
            elif time.monotonic() - moved > STALL_S:
                break
        alive = not source.finished.is_set() and source.metrics.status == "consuming"
    finally:
        source.stop()
        await source.wait_stopped()
        stage.close()
        producer.close()
    m = source.metrics
    began = clocked.first_at
    return PipelineRun(
        processed,
        alive,
        seen < count and alive,
        (m.last_update or 0.0) - began if began else 0.0,
        m.status,
        m.errors,
        m.last_error,
        stage.findings,
        len(stage.manager.history),
    )


def run_fuzz(
    settings: Settings,
    count: int = 100_000,
    valid_share: float = 0.1,
    seed: int = 1,
    progress: Callable[[str], None] = print,
) -> dict[str, object]:
    """Run the campaign on a fresh set of topics; the figures and verdict as one JSON-able dict."""
    began = time.perf_counter()
    run = uuid.uuid4().hex[:8]
    topics = {k: f"workbench.fuzz.{run}.{k}" for k in ("readings", "deadletter", "alerts")}
    ensure_topics(settings, {topics["readings"]: 6, topics["deadletter"]: 1, topics["alerts"]: 3})
    progress(f"generating {count:,} records (seed {seed}, {valid_share:.0%} valid)…")
    records = generate(count, valid_share, seed, datetime.now(UTC))
    volume = sum(len(r.value or b"") for r in records)
    progress(f"producing them to {topics['readings']} ({volume / 1e6:,.1f} MB)…")
    t0 = time.perf_counter()
    producer = make_producer(settings, client_id="workbench-fuzz")
    try:
        deliver(
            producer,
            topics["readings"],
            (
                (r.key, r.value, [(FAMILY_HEADER, r.family.encode()), (CASE_HEADER, b"%d" % i)])
                for i, r in enumerate(records)
            ),
        )
    finally:
        producer.close()
    produce_s = time.perf_counter() - t0
    progress(f"running the pipeline ({settings.backend}) over them…")
    pipeline = asyncio.run(_run_pipeline(settings, topics, count))
    progress("reading the topics back and checking…")
    outcome = tally(
        records,
        _positions(settings, topics["readings"]),
        _deadletters(settings, topics["deadletter"]),
        pipeline.processed,
    )
    problems = outcome["dead_letter_problems"]
    ok = (
        pipeline.alive
        and not pipeline.stalled
        and outcome["hostile_missing"] == 0
        and outcome["hostile_processed"] == 0
        and outcome["valid_missing"] == 0
        and outcome["valid_dead_lettered"] == 0
        and not any(problems.values())  # type: ignore[attr-defined]
    )
    return {
        "ok": ok,
        "records": count,
        "hostile": sum(r.hostile for r in records),
        "valid": sum(not r.hostile for r in records),
        "megabytes": round(volume / 1e6, 1),
        "seed": seed,
        "client": settings.backend,
        "topics": topics,
        "records_per_s": round(count / pipeline.seconds) if pipeline.seconds else None,
        "produce_s": round(produce_s, 1),
        "pipeline_s": round(pipeline.seconds, 1),
        "pipeline": {
            "alive": pipeline.alive,
            "stalled": pipeline.stalled,
            "status": pipeline.status,
            "errors": pipeline.errors,
            "last_error": pipeline.last_error,
            "findings": pipeline.findings,
            "alerts": pipeline.alerts,
        },
        **outcome,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "wall_s": round(time.perf_counter() - began, 1),
    }


def format_report(figures: dict) -> str:
    """The campaign's figures as text: a row per family, then the totals and the verdict."""
    head = f"{'family':<20}{'records':>9}{'dead-lettered':>15}{'dupl.':>7}{'missing':>9}"
    head += f"{'processed':>11}  top reason"
    lines = [head, "-" * len(head)]
    for name, f in figures["families"].items():
        reason = f["top_reasons"][0][0] if f["top_reasons"] else "–"
        lines.append(
            f"{name:<20}{f['records']:>9,}{f['dead_lettered']:>15,}{f['duplicates']:>7,}"
            f"{f['missing']:>9,}{f['processed']:>11,}  {reason[:70]}"
        )
    p = figures["pipeline"]
    problems = ", ".join(f"{k} {v:,}" for k, v in figures["dead_letter_problems"].items())
    rate = figures["records_per_s"]
    lines += [
        "",
        f"{figures['records']:,} records ({figures['hostile']:,} hostile, {figures['valid']:,} "
        f"valid; {figures['megabytes']:,} MB), seed {figures['seed']}, client {figures['client']}",
        f"pipeline: {'–' if rate is None else f'{rate:,}'} records/s over "
        f"{figures['pipeline_s']:,} s; {'alive' if p['alive'] else 'STOPPED'}"
        f"{' (stalled)' if p['stalled'] else ''}, {p['errors']:,} errors, "
        f"{p['findings']:,} findings, {p['alerts']:,} alerts",
        f"hostile: missing {figures['hostile_missing']:,}, reached detection "
        f"{figures['hostile_processed']:,}; valid: missing {figures['valid_missing']:,}, "
        f"dead-lettered {figures['valid_dead_lettered']:,}; duplicates: "
        f"{figures['duplicates']['dead_letters']:,} dead letters, "
        f"{figures['duplicates']['readings_processed']:,} readings",
        f"dead letters: {problems}",
        f"peak RSS {figures['peak_rss_mb']:,.0f} MB, wall time {figures['wall_s']:,} s "
        f"(producing {figures['produce_s']:,} s)",
        "OK: nothing lost, nothing let through, the pipeline never stopped"
        if figures["ok"]
        else "FAILED: see the counts above",
    ]
    return "\n".join(lines)
