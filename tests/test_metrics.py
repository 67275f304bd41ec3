"""Pipeline metrics are written by the pipeline's loop and read from other threads (the dashboard,
the detection thread, the API's status line): reading them must never fail nor see torn figures."""

from __future__ import annotations

import threading
import time

from workbench.streams.metrics import PipelineMetrics

BATCH = 50


def test_concurrent_readers_never_fail_while_a_writer_records_batches() -> None:
    metrics = PipelineMetrics()
    stop = threading.Event()
    errors: list[BaseException] = []
    written = [0]
    seen_totals: list[list[int]] = [[] for _ in range(3)]

    def writer() -> None:
        stamps = [int(time.time() * 1000)] * BATCH
        while not stop.is_set():
            metrics.record_batch(BATCH, 1, stamps, time.time())
            written[0] += 1
            if written[0] % 100 == 0:
                metrics.record_error(OSError("broker went away"), status="consuming")

    def reader(totals: list[int]) -> None:
        while not stop.is_set():
            try:
                snap = metrics.snapshot()
                metrics.rate()
                snap.line()
                # One instant: every batch in the total is in the dead-letter count too.
                assert snap.total == snap.batches * BATCH and snap.dead_lettered == snap.batches
            except BaseException as exc:  # any failure at all is the finding
                errors.append(exc)
                return
            totals.append(snap.total)

    threads = [threading.Thread(target=writer)] + [
        threading.Thread(target=reader, args=(t,)) for t in seen_totals
    ]
    for t in threads:
        t.start()
    time.sleep(2.0)
    stop.set()
    for t in threads:
        t.join(10)
    assert errors == []
    assert all(len(t) > 10 for t in seen_totals)  # the readers really ran alongside the writer
    assert all(t == sorted(t) for t in seen_totals)  # figures never go backwards
    final = metrics.snapshot()
    assert final.total == written[0] * BATCH and final.batches == written[0]
    assert final.errors == written[0] // 100
    assert final.messages_per_s > 0 and final.latency_ms_p50 is not None
