"""The simulator's ground truth, read live so the dashboard can score its alerts."""

from __future__ import annotations

from collections import deque

from workbench.simulator.anomalies import Truth, decode_truth
from workbench.streams.follow import decode_each
from workbench.streams.records import Record


class TruthFeed:
    """The truths read from ``iot.truth`` since the view began, in a bounded deque (newest last).

    A simulator publishes an anomaly's truth once it has ended, so the feed trails the alerts.
    Undecodable records are skipped: truth is only a yardstick, never an input to detection. The
    session follows the topic with its other topics, as an optional one: a fleet with no
    simulator has no truth topic, and the views do not wait for it.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.truths: deque[Truth] = deque(maxlen=size)

    async def take(self, records: list[Record]) -> None:
        """The follower's handler for the truth topic."""
        self.truths.extend(decode_each(records, decode_truth))
