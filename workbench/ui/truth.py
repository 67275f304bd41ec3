"""The simulator's ground truth, read live so the dashboard can score its alerts."""

from __future__ import annotations

from collections import deque

from workbench.config import TOPIC_TRUTH, Settings
from workbench.simulator.anomalies import Truth, decode_truth
from workbench.streams.follow import TopicFollower, decode_each
from workbench.streams.records import Record


class TruthFeed:
    """Follows ``iot.truth`` from its end into a bounded deque (newest last).

    A simulator publishes an anomaly's truth once it has ended, so the feed trails the alerts.
    Undecodable records are skipped: truth is only a yardstick, never an input to detection. A
    fleet with no simulator has no truth topic; the feed then waits for one.
    """

    def __init__(self, settings: Settings, topic: str = TOPIC_TRUTH, size: int = 10_000) -> None:
        self.truths: deque[Truth] = deque(maxlen=size)
        self._follower = TopicFollower(settings, topic, self._take, start="latest")

    async def _take(self, records: list[Record]) -> None:
        self.truths.extend(decode_each(records, decode_truth))

    def start(self) -> None:
        """Begin following (on the running loop)."""
        self._follower.start()

    async def stop(self) -> None:
        await self._follower.stop()
