"""The supervisor keeps the detection workers alive and scales them by lag and CPU."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import msgspec

from tests.waiting import eventually
from tests.worker_helpers import Namespace
from workbench.config import Settings
from workbench.streams.records import Record
from workbench.supervisor import AutoScaler, Supervisor
from workbench.ui.overview import OverviewPanel
from workbench.ui.session import LiveSession


def test_the_autoscaler_adds_a_worker_only_while_lag_grows_and_all_are_busy() -> None:
    scaler = AutoScaler(maximum=3, cooldown_s=30, calm_s=60)
    t = 100.0
    assert scaler.want(1, 50_000, [0.95], t) == 1  # the first look: no trend yet
    assert scaler.want(1, 40_000, [0.95], t + 10) == 1  # lag shrinking: it copes
    assert scaler.want(1, 60_000, [0.5], t + 20) == 1  # growing, but the worker is not busy
    assert scaler.want(1, 80_000, [0.95], t + 40) == 2  # growing and busy: one more
    assert scaler.want(2, 99_000, [0.95, 0.95], t + 50) == 2  # cooling down after a change
    assert scaler.want(2, 120_000, [0.95, 0.9], t + 80) == 3
    assert scaler.want(3, 200_000, [1.0, 1.0, 1.0], t + 200) == 3  # at the maximum


def test_the_autoscaler_removes_a_worker_after_a_calm_minute_never_below_one() -> None:
    scaler = AutoScaler(cooldown_s=30, calm_s=60)
    t = 1000.0
    assert scaler.want(2, 10, [0.1, 0.1], t) == 2
    assert scaler.want(2, 10, [0.1, 0.1], t + 30) == 2  # calm for 30 s only
    assert scaler.want(2, 5_000, [0.1, 0.1], t + 40) == 2  # a burst of lag resets the calm
    assert scaler.want(2, 10, [0.1, 0.1], t + 50) == 2
    assert scaler.want(2, 10, [0.1, 0.2], t + 111) == 1
    assert scaler.want(1, 0, [0.0], t + 300) == 1


def test_a_killed_worker_is_restarted_and_takes_partitions_again(
    kafka: Settings, tmp_path: Path
) -> None:
    ns = Namespace(kafka, tmp_path)
    supervisor = Supervisor(
        kafka, ns.group, tmp_path / "workers", workers=2, topics_prefix=ns.prefix
    )
    try:
        names = [w.name for w in supervisor.workers]

        def both_own_some() -> bool:
            supervisor.check()
            owned = ns.owned()
            return all(owned.get(n) for n in names) and sum(map(len, owned.values())) == 6

        assert eventually(both_own_some, 90, every_s=1), (ns.owned(), list(supervisor.events))
        victim = supervisor.workers[0]
        assert victim.proc is not None
        old_pid = victim.proc.pid
        os.kill(old_pid, signal.SIGKILL)
        assert eventually(lambda: (supervisor.check(), victim.restarts == 1)[1], 30)
        assert victim.proc is not None and victim.proc.pid != old_pid
        events = "\n".join(supervisor.events)
        assert f"{victim.name} exited with code -9; restarting in 1 s" in events
        began = time.time()
        assert eventually(
            lambda: (
                supervisor.check(),
                ns.figures().get(victim.name, {}).get("at", 0) > began
                and ns.owned().get(victim.name),
            )[1],
            90,
            every_s=1,
        ), (ns.owned(), events)

        # The dashboard's overview shows the restart, the events and each partition's lag,
        # from what the supervisor and the workers publish (the restarted worker's lag is
        # unknown until its first fetch has come back).
        assert eventually(
            lambda: all(f["pipeline"]["partition_lag"] for f in ns.figures().values()), 30
        ), ns.figures()
        published = [supervisor.report(), *ns.figures().values()]
        records = [Record(0, i, 0, None, msgspec.json.encode(f)) for i, f in enumerate(published)]
        session = LiveSession(kafka, topics=ns.topics, truth_topic=None)
        asyncio.run(session._on_figures(records))
        overview = OverviewPanel(session)
        text = re.sub(r"<[^>]+>", " ", overview.workers.value)
        assert f"supervisor of {ns.group}: 2 of 2 workers running (fixed) · 1 restart" in text
        assert f"{victim.name} exited with code -9" in text
        assert re.search(rf"{victim.name}: partitions \d \(lag \d+ msgs\)", text), text
    finally:
        supervisor.stop()
    assert all(w.proc is None or w.proc.poll() == 0 for w in supervisor.workers)
