"""The fuzz campaign: its generator makes what the validator must refuse (and valid readings it
must pass), its check notices every kind of loss, and a small campaign through the real broker
keeps every guarantee."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import msgspec
import pytest

from workbench.bench.fuzz import DeadLetter, run_fuzz, tally
from workbench.bench.hostile import FAMILIES, VALID, VALID_EDGE, FuzzRecord, generate
from workbench.config import BACKENDS, Settings
from workbench.schema import Reading
from workbench.streams.clients import RecordBatch
from workbench.streams.validate import ReadingValidator

NOW = datetime.now(UTC)
PER_FAMILY = 80


def validate_each(records: list[FuzzRecord]) -> list[object]:
    """Each record validated in a batch of its own: the reading, or the reason it was refused."""
    validator = ReadingValidator()
    out = []
    for r in records:
        batch = RecordBatch("t", [r.value], [r.key], [0], {0: 1}, [(0, 0)], lambda i: (0, 0))
        got = validator(batch)
        out.append(got.readings[0] if got.readings else got.rejected[0].reason)
    return out


@pytest.fixture(scope="module")
def hostile() -> list[FuzzRecord]:
    return generate(PER_FAMILY * len(FAMILIES), valid_share=0.0, seed=7, now=NOW)


def test_every_family_is_made_in_equal_parts(hostile: list[FuzzRecord]) -> None:
    assert Counter(r.family for r in hostile) == dict.fromkeys(FAMILIES, PER_FAMILY)


def test_every_hostile_record_is_refused_with_a_reason(hostile: list[FuzzRecord]) -> None:
    passed = [
        (r.family, r.value[:120] if r.value else r.value)
        for r, got in zip(hostile, validate_each(hostile), strict=True)
        if not isinstance(got, str) or not got
    ]
    assert passed == []


def test_the_families_hold_the_inputs_they_are_named_for(hostile: list[FuzzRecord]) -> None:
    values = {f: [r.value or b"" for r in hostile if r.family == f] for f in FAMILIES}
    assert any(v == b"[" * 100_000 for v in values["deep_nesting"])
    assert any(b"1" + b"0" * 5000 in v or b"9" * 4300 in v for v in values["huge_numbers"])
    assert any(b"\\u0000" in v or b"\x00" in v for v in values["control_chars"])
    assert any(b"<script>" in v or b"onerror" in v for v in values["markup"])
    assert any(b'"=cmd|' in v or b'"@SUM' in v for v in values["formulas"])
    assert all(len(v) > 16 * 1024 for v in values["oversize"])
    assert any(r.value is None for r in hostile if r.family == "empty")
    readings = [r for r in hostile if r.family == "key_mismatch"]
    assert all(r.key != r.reading[0].encode() for r in readings)  # type: ignore[index]


def test_valid_and_odd_but_valid_readings_pass_as_the_readings_they_claim_to_be() -> None:
    records = generate(600, valid_share=1.0, seed=7, now=NOW)
    assert {r.family for r in records} == {VALID, VALID_EDGE}
    got = validate_each(records)
    refused = [(r.value, g) for r, g in zip(records, got, strict=True) if isinstance(g, str)]
    assert refused == []
    assert [(g.device_id, g.seq) for g in got] == [r.reading for r in records]  # type: ignore[union-attr]
    assert len({r.reading for r in records}) == len(records)  # each one traceable


def test_the_generator_is_deterministic_for_a_seed_and_mixes_the_share_asked_for() -> None:
    first = generate(2_000, valid_share=0.25, seed=11, now=NOW)
    assert generate(2_000, valid_share=0.25, seed=11, now=NOW) == first
    assert generate(2_000, valid_share=0.25, seed=12, now=NOW) != first
    assert sum(not r.hostile for r in first) == 500
    valid = [msgspec.json.decode(r.value, type=Reading) for r in first if r.family == VALID]
    per_device: dict[str, list[int]] = {}
    for reading in valid:
        per_device.setdefault(reading.device_id, []).append(reading.seq)
    assert all(seqs == sorted(seqs) for seqs in per_device.values())  # simulator order kept


def test_the_check_notices_every_kind_of_loss() -> None:
    records = [
        FuzzRecord("markup", b"k0", b"<b>", ("fuzz-0", 0)),
        FuzzRecord("empty", b"k1", None, ("fuzz-1", 1)),
        FuzzRecord("oversize", b"k2", b"x" * 20, ("fuzz-2", 2)),
        FuzzRecord("key_mismatch", None, b"{}", ("fuzz-3", 3)),
        FuzzRecord(VALID, b"d-1", b"{}", ("d-1", 0)),
        FuzzRecord(VALID, b"d-1", b"{}", ("d-1", 1)),
        FuzzRecord(VALID_EDGE, b"d-2", b"{}", ("d-2", 0)),
    ]
    positions = {(0, i): i for i in range(len(records))}
    letters = [
        DeadLetter(0, 0, b"k0", b"<b>", "schema: markup"),
        DeadLetter(0, 0, b"k0", b"<b>", "schema: markup"),  # delivered twice
        DeadLetter(0, 1, b"k1", b"", ""),  # a tombstone, written empty; no reason
        DeadLetter(0, 2, b"k2", b"x" * 19, "oversize"),  # bytes changed
        DeadLetter(0, 9, b"??", b"", "from nowhere"),
        DeadLetter(0, 6, b"d-2", b"{}", "pipeline error: boom"),  # a valid reading lost
    ]
    processed = Counter({("d-1", 0): 2, ("fuzz-3", 3): 1, ("stranger", 5): 1})
    out = tally(records, positions, letters, processed)
    families = out["families"]
    assert families["markup"]["dead_lettered"] == 1 and families["markup"]["duplicates"] == 1
    assert families["key_mismatch"]["missing"] == 1 and families["key_mismatch"]["processed"] == 1
    assert out["hostile_missing"] == 1
    assert out["hostile_processed"] == 2  # key_mismatch, and a reading nobody sent
    assert families[VALID]["missing"] == 1 and families[VALID_EDGE]["dead_lettered"] == 1
    assert out["valid_missing"] == 1 and out["valid_dead_lettered"] == 1
    assert out["duplicates"] == {"dead_letters": 1, "readings_processed": 1}
    assert out["dead_letter_problems"] == {
        "without_reason": 1,
        "bytes_changed": 1,
        "unknown_origin": 1,
    }
    assert families["markup"]["top_reasons"] == [("schema: markup", 1)]


@pytest.mark.kafka
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_small_campaign_through_the_real_broker_loses_nothing_and_lets_nothing_by(
    kafka: Settings, backend: str
) -> None:
    figures = run_fuzz(
        kafka.with_(backend=backend), count=2_500, valid_share=0.2, seed=5, progress=lambda _m: None
    )
    families = figures["families"]
    assert figures["ok"], figures
    assert figures["pipeline"]["alive"] and not figures["pipeline"]["stalled"]
    for name in FAMILIES:
        f = families[name]
        assert f["records"] > 100 and f["dead_lettered"] == f["records"], (name, f)
        assert f["processed"] == 0 and f["top_reasons"], (name, f)
    for name in (VALID, VALID_EDGE):
        f = families[name]
        assert f["records"] > 0 and f["processed"] == f["records"], (name, f)
        assert f["dead_lettered"] == 0, (name, f)
    assert figures["valid"] == 500 and figures["hostile"] == 2_000
    assert figures["records_per_s"] > 0 and figures["peak_rss_mb"] > 0
