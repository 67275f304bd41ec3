"""The live dashboard: every panel on one viewer's session, refreshed without blocking the kernel.

The session only reads what the detection workers publish (no detection in the page's kernel).

The charts that follow the stream (overview, trend, alert feed) redraw four times a second; the
fleet views (map, device mix, counters, alert history, tuning effect) at the chosen interval
(1–10 s). Either way the UI rate is independent of the ingest rate. A hidden ``Play`` widget
ticks from the browser; when the ticks stop (tab closed) the watchdog stops this viewer's
session, so its kernel goes idle and the server culls it.
"""

from __future__ import annotations

import asyncio
import html
import math
import os
import sys
import time
from typing import Any

import ipywidgets as widgets

from workbench.config import Settings
from workbench.streams.worker import CHECKPOINT_S, WorkerTopics
from workbench.ui.alerts_view import HISTORY_ROWS, AlertFeedPanel, AlertHistoryPanel
from workbench.ui.controls import ControlsPanel
from workbench.ui.counters import CountersPanel
from workbench.ui.fleet_views import DistributionPanel, MapPanel
from workbench.ui.overview import OverviewPanel
from workbench.ui.session import LiveSession
from workbench.ui.style import CSS
from workbench.ui.trend import TrendPanel
from workbench.ui.tuning import TuningPanel

LIVE_TICK_S = 0.25
HEARTBEAT_MS = 1_000
FLEET_AT_LEAST_S = 10.0
"""The fleet views are redrawn when what they show changed, and this often anyway."""
WATCHDOG_S = float(os.environ.get("WORKBENCH_WATCHDOG_S", "30"))
"""Stop the session when the page's heartbeat has been silent this long (s)."""
GIL_SWITCH_S = 0.001


class Dashboard:
    """All panels for one ``LiveSession``; display it in a notebook or let Voilà render it.

    The pickers, units, counters and map follow the session's profiles (its fleet's device types).
    """

    def __init__(self, session: LiveSession | None = None, heartbeat: bool = True) -> None:
        self.session = session or LiveSession()
        s = self.session
        self.overview = OverviewPanel(s)
        self.trend = TrendPanel(s)
        self.distribution = DistributionPanel()
        self.counters = CountersPanel(s.profiles)
        self.map = MapPanel(s.profiles)
        self.feed = AlertFeedPanel(s)
        self.history = AlertHistoryPanel(s)
        self.tuning = TuningPanel(s)
        self.controls = ControlsPanel(s, on_clear=self._after_clear)
        self.heartbeat = widgets.Play(
            value=0,
            min=0,
            max=10**9,
            interval=HEARTBEAT_MS,
            layout=widgets.Layout(display="none"),
        )
        self.last_beat: float | None = None
        self.heartbeat.observe(self._beat, "value")
        grid = widgets.Box(
            [
                self.overview.widget,
                self.trend.widget,
                self.feed.widget,
                self.tuning.widget,
                self.map.widget,
                self.distribution.widget,
                self.counters.widget,
                self.history.widget,
                self.controls.widget,
            ]
        )
        grid.add_class("wb-grid")
        self.widget = widgets.VBox([widgets.HTML(CSS), grid, self.heartbeat])
        self.widget.add_class("wb-dash")
        self._drawn: dict[str, tuple[tuple[int, ...] | None, float]] = {}
        """Panel → (the session changes it last showed, when it was drawn)."""
        self._use_heartbeat = heartbeat
        self._task: asyncio.Task | None = None
        self.stopped_reason: str | None = None

    @classmethod
    def from_env(cls, **session_options: Any) -> Dashboard:
        """A dashboard on the cluster and topics the environment configures."""
        options = {"topics": WorkerTopics.from_env(), **session_options}
        return cls(LiveSession(Settings.from_env(), **options))

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> Dashboard:
        """Start the refresh loop on the kernel's loop, and the session (returns at once).

        With the heartbeat on, the session starts with the page's first tick: a kernel Voilà
        preheats for the next viewer then consumes nothing until someone is looking.
        """
        # The kernel's main thread serves widgets while the consumer and detection threads hold
        # the GIL in turns; a shorter switch interval (default 5 ms) keeps the page responsive.
        sys.setswitchinterval(GIL_SWITCH_S)
        if not self._use_heartbeat:
            self.session.start()
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self

    async def stop(self, reason: str = "stopped") -> None:
        """Stop refreshing and this viewer's session (its consumers leave)."""
        self.stopped_reason = reason
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        await self.session.stop()

    def _beat(self, _change: object) -> None:
        self.last_beat = time.monotonic()
        if not self.session.started and self.stopped_reason is None:
            self.session.start()

    def _after_clear(self) -> None:
        self.trend.reselect()
        self.refresh_live()

    # -- refreshing ------------------------------------------------------------------------
    def _due(
        self, panel: str, sources: tuple[str, ...], every_s: float, least_s: float = 0.0
    ) -> bool:
        """Whether ``panel`` is to be redrawn: what it shows (``sources``, session changes)
        changed and ``least_s`` passed since its last drawing, or ``every_s`` passed anyway
        (it shows times). Marks it drawn when due."""
        seen = tuple(self.session.changes[s] for s in sources)
        now = time.monotonic()
        last_seen, last_at = self._drawn.get(panel, (None, -math.inf))
        due = (seen != last_seen and now - last_at >= least_s) or now - last_at >= every_s
        if due:
            self._drawn[panel] = (seen, now)
        return due

    def refresh_live(self) -> None:
        """Redraw what changed (each panel also every few seconds: it shows ages and times)."""
        if self._due("overview", ("figures",), every_s=1.0, least_s=0.5):
            self.overview.refresh()
        self.trend.refresh()  # when it has new points
        if self._due("feed", ("alerts", "lifecycle"), every_s=5.0, least_s=0.5):
            self.feed.refresh()

    async def refresh_fleet(self) -> None:
        s = self.session
        shown = [a.alert_id for a in self.history.matching()[:HISTORY_ROWS]]
        await s.refresh_lifecycle(list(dict.fromkeys(self.feed.shown() + shown)))
        latest = dict(s.latest)
        # Devices' states change once per worker checkpoint: redraw at most that often.
        if self._due(
            "fleet", ("devices", "alerts"), every_s=FLEET_AT_LEAST_S, least_s=CHECKPOINT_S
        ):
            self.distribution.refresh(latest)
            self.map.refresh(latest, s.alerts.active())
        # Counters advance with the devices' states, which workers publish every CHECKPOINT_S.
        if self._due("counters", ("devices",), every_s=FLEET_AT_LEAST_S, least_s=CHECKPOINT_S):
            self.counters.refresh(s.counter_runs(), latest)
        self.trend.follow_fleet(s.latest)  # also follows the type picked meanwhile
        # The feed shows changes within half a second; the long table at most every CHECKPOINT_S.
        if self._due(
            "history", ("alerts", "lifecycle"), every_s=FLEET_AT_LEAST_S, least_s=CHECKPOINT_S
        ):
            self.history.refresh()
        if self._due("tuning", ("settings", "figures", "alerts"), every_s=FLEET_AT_LEAST_S):
            self.tuning.refresh()

    def _kick_heartbeat(self) -> None:
        """Play only ticks after ``playing`` goes False → True while a page shows it, and the
        kernel cannot tell when a page appears: flip it until the first tick arrives."""
        self.heartbeat.playing = False
        self.heartbeat.playing = True

    async def _run(self) -> None:
        last_fleet = last_kick = 0.0
        while True:
            await asyncio.sleep(LIVE_TICK_S)
            if self._use_heartbeat and self.last_beat is None:
                if time.monotonic() - last_kick >= 1.0:
                    last_kick = time.monotonic()
                    self._kick_heartbeat()
                continue
            if self._watchdog_expired():
                await self.stop("the page stopped sending heartbeats (closed?)")
                return
            if not self.controls.auto.value:
                continue
            try:
                self.refresh_live()
                if time.monotonic() - last_fleet >= self.controls.interval.value:
                    last_fleet = time.monotonic()
                    await self.refresh_fleet()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a view error must not end the refresh loop
                why = f"refresh failed: {type(exc).__name__}: {exc}"
                self.controls.links.value = html.escape(why)

    def _watchdog_expired(self) -> bool:
        """Armed by the first tick (a preheated kernel has no page yet)."""
        return (
            self._use_heartbeat
            and self.last_beat is not None
            and time.monotonic() - self.last_beat > WATCHDOG_S
        )
