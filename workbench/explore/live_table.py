"""A live table of the latest reading per device, refreshed on the kernel's event loop.

The Kafka source runs on the kernel's loop (never a blocking cell) under its own consumer group,
so it sees every reading whoever else is consuming. It is bounded: at most ``rows`` devices (the
most recently heard) are kept, the page is redrawn at most every ``refresh_s``, and with
``run_for_s`` it stops by itself.
"""

from __future__ import annotations

import html
import uuid
from collections import OrderedDict

import ipywidgets as widgets
from tornado.ioloop import IOLoop, PeriodicCallback

from workbench.config import TOPIC_READINGS, Settings
from workbench.explore.table import readings_table
from workbench.schema import Reading
from workbench.streams.source import from_kafka_readings
from workbench.streams.validate import ReadingBatch


class LiveTable:
    """``display(live.widget)``, then ``live.start()``; ``live.stop()`` ends it."""

    def __init__(
        self,
        settings: Settings | None = None,
        topic: str = TOPIC_READINGS,
        rows: int = 15,
        refresh_s: float = 1.0,
        start: str = "latest",
        run_for_s: float | None = None,
    ) -> None:
        if rows < 1:
            raise ValueError(f"rows={rows}: the table needs at least 1 row")
        if refresh_s < 0.05:
            raise ValueError(f"refresh_s={refresh_s}: redraw at most every 0.05 s or slower")
        if run_for_s is not None and run_for_s <= 0:
            raise ValueError(f"run_for_s={run_for_s}: it must be more than 0 s (or None)")
        self.rows = rows
        self.refresh_s = refresh_s
        self.run_for_s = run_for_s
        self.latest: OrderedDict[str, Reading] = OrderedDict()
        """device id → its latest reading, most recently heard last."""
        self.table = widgets.HTML("<i>waiting for readings…</i>")
        self.status = widgets.HTML()
        self.widget = widgets.VBox([self.status, self.table])
        self.source = from_kafka_readings(
            settings, topic=topic, group_id=f"explore-{uuid.uuid4().hex[:12]}", start=start
        )
        self.source.sink(self._keep)
        self._dirty = False
        self._timer = PeriodicCallback(self.render, refresh_s * 1000)

    def _keep(self, batch: ReadingBatch) -> None:
        for reading in batch.readings:
            self.latest[reading.device_id] = reading
            self.latest.move_to_end(reading.device_id)
        while len(self.latest) > self.rows:
            self.latest.popitem(last=False)
        self._dirty = True

    def render(self) -> None:
        """Redraw the table (if anything changed) and the status line."""
        self.status.value = f"<code>{html.escape(self.source.metrics.snapshot().line())}</code>"
        if self._dirty:
            self._dirty = False
            newest = list(reversed(self.latest.values()))
            caption = f"latest reading of the {len(newest)} devices heard last, newest first"
            self.table.value = readings_table(newest, caption=caption)

    def start(self) -> None:
        """Start consuming and redrawing on the running (kernel's) loop; returns at once."""
        self.source.start()
        self._timer.start()
        if self.run_for_s is not None:
            IOLoop.current().call_later(self.run_for_s, self.stop)

    def stop(self) -> None:
        """Stop consuming (offsets of what was shown are committed) and draw the final state."""
        self._timer.stop()
        self.source.stop()
        self.render()
