"""The source's own fault handling, fed by an in-memory consumer backend (pure logic, no broker).

Kafka faults themselves are exercised against the real broker in test_ingest_kafka.py; this pins
one ordering rule those tests only hit by chance: once poll() has returned records, nothing may
make the source poll again before it has handled them.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.kafka_helpers import env_reading
from workbench import schema
from workbench.config import Settings
from workbench.streams import source as source_module
from workbench.streams.clients import RecordBatch
from workbench.streams.source import from_kafka_readings


class LagFailsOnce:
    """Two polls of records; the lag query after the first fails, as a broker outage makes it."""

    def __init__(self) -> None:
        values = [schema.encode(env_reading(1, seq)) for seq in range(10)]
        self.polls = [values[:5], values[5:]]
        self.offset = 0
        self.lag_calls = 0
        self.committed: dict[int, int] = {}

    def poll(self, max_records: int, timeout_s: float) -> RecordBatch | None:
        if not self.polls:
            return None
        values = self.polls.pop(0)
        first, self.offset = self.offset, self.offset + len(values)
        return RecordBatch(
            "t",
            values,
            [b"env-0001"] * len(values),
            [0] * len(values),
            {0: self.offset},
            [(0, 0)],
            lambda i: (0, first + i),
        )

    def commit(self, offsets: dict[int, int]) -> None:
        self.committed.update(offsets)

    def lag(self) -> dict[int, int] | None:
        self.lag_calls += 1
        if self.lag_calls == 1:
            raise TimeoutError("position unknown: the broker is restarting")
        return {0: 0}

    def close(self) -> None:
        pass


def source_on(
    backend: LagFailsOnce, monkeypatch: pytest.MonkeyPatch, **options: float
) -> from_kafka_readings:
    """A grouped source whose consumer is ``backend`` (made on the running loop)."""
    monkeypatch.setattr(source_module, "make_consumer", lambda *_args: backend)
    return from_kafka_readings(
        Settings.from_env(bootstrap_servers="localhost:1"),
        topic="t",
        group_id="g",
        deadletter_topic=None,
        **options,
    )


def test_records_polled_before_a_failing_lag_query_are_still_handled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = LagFailsOnce()

    async def run() -> list[int]:
        source = source_on(
            backend,
            monkeypatch,
            commit_interval_s=0,
        )
        seqs: list[int] = []

        def keep(batch) -> None:
            seqs.extend(r.seq for r in batch.readings)
            if len(seqs) >= 10:
                source.stop()

        source.sink(keep)
        source.start()
        await asyncio.wait_for(source.wait_stopped(), 10)
        return seqs

    assert asyncio.run(run()) == list(range(10))
    assert backend.committed == {0: 10}


class RebalanceInProgressError(Exception):
    """Named as kafka-python names it: the group is rebalancing, the commit may be retried."""


class RebalancesAtStop(LagFailsOnce):
    """Ten readings in one poll; the commits meet a rebalance in progress twice, as a stop under
    load did (the group's join completing late)."""

    def __init__(self) -> None:
        super().__init__()
        self.polls = [[v for poll in self.polls for v in poll]]
        self.refusals = 2
        self.polls_after_stop = 0

    def poll(self, max_records: int, timeout_s: float) -> RecordBatch | None:
        if not self.polls:
            self.polls_after_stop += 1
        return super().poll(max_records, timeout_s)

    def commit(self, offsets: dict[int, int]) -> None:
        if self.refusals:
            self.refusals -= 1
            raise RebalanceInProgressError("the consumer is undergoing a rebalance")
        super().commit(offsets)

    def lag(self) -> dict[int, int] | None:
        return {0: 0}


def test_a_stop_during_a_rebalance_still_commits_what_was_handled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = RebalancesAtStop()

    async def run() -> None:
        source = source_on(
            backend,
            monkeypatch,
            commit_interval_s=60,  # nothing is committed before the stop
        )
        source.sink(lambda _batch: source.stop())
        source.start()
        await asyncio.wait_for(source.wait_stopped(), 10)

    asyncio.run(run())
    assert backend.committed == {0: 10}  # before the fix: {} (one try, then closed)
    assert backend.polls_after_stop >= 1  # it let the rebalance complete between tries


class RefusesTheLastBatchsCommitOnce(LagFailsOnce):
    """Two polls of readings, then none; the commit after the last one meets a rebalance."""

    def __init__(self) -> None:
        super().__init__()
        self.commit_calls = 0

    def commit(self, offsets: dict[int, int]) -> None:
        self.commit_calls += 1
        if self.commit_calls == 2:
            raise RebalanceInProgressError("the consumer is undergoing a rebalance")
        super().commit(offsets)

    def lag(self) -> dict[int, int] | None:
        return {0: 0}


def test_a_commit_refused_during_a_rebalance_is_counted_but_the_source_is_still_consuming(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    backend = RefusesTheLastBatchsCommitOnce()

    async def run() -> tuple[str, int]:
        source = source_on(
            backend,
            monkeypatch,
            commit_interval_s=0,
            poll_timeout_s=0.01,
        )
        source.start()
        while backend.committed != {0: 10}:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # idle polls after the last batch: no record to reset the status
        status, errors = source.metrics.status, source.metrics.errors
        source.stop()
        await asyncio.wait_for(source.wait_stopped(), 10)
        return status, errors

    status, errors = asyncio.run(asyncio.wait_for(run(), 20))
    assert status == "consuming"  # it was "reconnecting" until the next batch of records came
    assert errors == 1
