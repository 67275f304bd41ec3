"""Tuning panel: the detector settings every worker applies, changed by analysts, previewed.

The sliders show the settings in force (a change anyone makes shows here too). An analyst's
change is published to every worker once confirmed ("Apply to all workers…", then "Confirm");
for a viewer the panel is read-only. "Preview" replays the last minutes of readings from Kafka
with the panel's settings and says how many alerts they would have raised.
"""

from __future__ import annotations

import asyncio
import html
import time
from typing import Any

import ipywidgets as widgets

from workbench.alerts.model import SeverityPolicy
from workbench.models.ensemble import COMPONENTS
from workbench.ui.session import LiveSession
from workbench.ui.style import card, full_width

UPDATE_INTERVALS = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 100_000)
COMPONENT_NAMES = {
    "robust_z": "robust z-score",
    "ewma": "EWMA",
    "stuck": "stuck sensor",
    "dropout": "dropout",
    "shift": "level shift / drift",
    "noise": "noise burst",
    "location": "location jump",
    "counter": "counter surge / reset",
    "forest": "Isolation Forest",
    "density": "DBSCAN density",
    "novelty": "univariate novelty",
}


class TuningPanel:
    """Sliders and toggles bound to one session's detector and severity policy."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        params = session.params()
        policy = session.policy
        style = {"description_width": "150px"}
        self.threshold = widgets.FloatSlider(
            value=params["anomaly_threshold"],
            min=0.0,
            max=1.0,
            step=0.01,
            description="anomaly threshold",
            style=style,
            continuous_update=False,
        )
        self.threshold.add_class("wb-threshold")
        self.window = widgets.IntSlider(
            value=params["window_size"],
            min=10,
            max=1_000,
            step=10,
            description="window (readings)",
            style=style,
            continuous_update=False,
        )
        interval = params["model_update_interval"]
        options = sorted({*UPDATE_INTERVALS, interval})
        self.update_interval = widgets.SelectionSlider(
            options=options,
            value=interval,
            description="model update (readings)",
            style=style,
            continuous_update=False,
        )
        self.high = widgets.FloatSlider(
            value=policy.high,
            min=0.0,
            max=1.0,
            step=0.05,
            description="high from",
            style=style,
            continuous_update=False,
        )
        self.medium = widgets.FloatSlider(
            value=policy.medium,
            min=0.0,
            max=1.0,
            step=0.05,
            description="medium from",
            style=style,
            continuous_update=False,
        )
        self.toggles = {
            name: widgets.Checkbox(
                value=params[f"use_{name}"],
                description=COMPONENT_NAMES[name],
                indent=False,
                layout=widgets.Layout(width="auto", min_width="0"),
            )
            for name in COMPONENTS
        }
        self.apply_button = widgets.Button(
            description="Apply to all workers…", button_style="primary", disabled=True
        )
        self.apply_button.add_class("wb-apply")
        self.confirm_button = widgets.Button(description="Confirm", button_style="warning")
        self.confirm_button.add_class("wb-confirm")
        self.cancel_button = widgets.Button(description="Cancel")
        self.confirm_text = widgets.HTML()
        self.confirm = widgets.HBox(
            [self.confirm_text, self.confirm_button, self.cancel_button],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center", display="none"),
        )
        self.readonly = widgets.HTML()
        self.readonly.add_class("wb-readonly")
        self.minutes = widgets.Dropdown(options=[1, 5, 15, 30, 60], value=5, description="minutes")
        self.preview_button = widgets.Button(description="Preview", icon="history")
        self.progress = widgets.FloatProgress(
            value=0, min=0, max=1, layout=widgets.Layout(width="100%", visibility="hidden")
        )
        self.applied = widgets.HTML()
        self.applied.add_class("wb-applied")
        self.effect = widgets.HTML()
        self.preview_result = widgets.HTML()
        self.preview_result.add_class("wb-preview")
        self.error = widgets.HTML()
        self.apply_ms: float | None = None
        self._tasks: set[asyncio.Task] = set()
        self._shown_version = session.version
        self._syncing = False
        sliders = [self.threshold, self.window, self.update_interval, self.high, self.medium]
        for w in [*sliders, *self.toggles.values()]:
            w.observe(self._changed, "value")
        for w in sliders:
            full_width(w)
        self.apply_button.on_click(lambda _b: self._ask())
        self.confirm_button.on_click(lambda _b: self._spawn(self._apply()))
        self.cancel_button.on_click(lambda _b: self._sync(force=True))
        self.preview_button.on_click(lambda _b: self._spawn(self._preview()))
        toggles = widgets.HBox(
            list(self.toggles.values()), layout=widgets.Layout(flex_flow="row wrap")
        )
        actions = widgets.HBox(
            [self.apply_button, self.minutes, self.preview_button],
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        self.widget = card(
            "Tuning",
            *sliders,
            toggles,
            self.readonly,
            actions,
            self.confirm,
            self.progress,
            self.error,
            self.applied,
            self.effect,
            self.preview_result,
        )
        self._show_applied()

    # -- settings from the panel -----------------------------------------------------------
    def params(self) -> dict[str, Any]:
        return {
            "anomaly_threshold": round(self.threshold.value, 4),
            "window_size": self.window.value,
            "model_update_interval": self.update_interval.value,
            **{f"use_{n}": box.value for n, box in self.toggles.items()},
        }

    def policy(self) -> SeverityPolicy:
        current = self.session.policy
        return SeverityPolicy(
            high=round(self.high.value, 4),
            medium=round(self.medium.value, 4),
            escalate_per_minute=current.escalate_per_minute,
        )

    # -- actions ---------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _changed(self, _change: object) -> None:
        if not self._syncing:
            self.apply_button.disabled = not self.session.may("analyst")

    def _ask(self) -> None:
        """Say what would change, for every worker, and wait for "Confirm"."""
        now, new = self.session.params(), self.params()
        moved = [f"{k} {now[k]} → {v}" for k, v in new.items() if now.get(k) != v]
        policy, current = self.policy(), self.session.policy
        for name in ("high", "medium"):
            if getattr(policy, name) != getattr(current, name):
                moved.append(f"{name} {getattr(current, name)} → {getattr(policy, name)}")
        self.confirm_text.value = (
            f"publish to every worker: {html.escape('; '.join(moved) or 'no change')}?"
        )
        self.confirm.layout.display = None

    async def _apply(self) -> None:
        self.confirm.layout.display = "none"
        started = time.perf_counter()
        try:
            await self.session.apply(self.params(), self.policy())
        except (ValueError, PermissionError) as exc:
            self.error.value = (
                f'<span style="color:#d62728">not applied: {html.escape(str(exc))}</span>'
            )
            return
        self.error.value = ""
        self.apply_ms = (time.perf_counter() - started) * 1000
        self.apply_button.disabled = True
        self._shown_version = self.session.version
        self._show_applied()

    def _sync(self, force: bool = False) -> None:
        """Show the settings in force on the sliders (another analyst changed them, or the
        change was cancelled), unless this viewer is editing."""
        version = self.session.version
        if not force and (version is self._shown_version or not self.apply_button.disabled):
            return
        self._shown_version = version
        params, policy = self.session.params(), self.session.policy
        self._syncing = True
        try:
            self.threshold.value = params["anomaly_threshold"]
            self.window.value = params["window_size"]
            if params["model_update_interval"] not in self.update_interval.options:
                options = sorted({*self.update_interval.options, params["model_update_interval"]})
                self.update_interval.options = options
            self.update_interval.value = params["model_update_interval"]
            self.high.value, self.medium.value = policy.high, policy.medium
            for name, box in self.toggles.items():
                box.value = params[f"use_{name}"]
        finally:
            self._syncing = False
        self.apply_button.disabled = True
        self.confirm.layout.display = "none"
        self._show_applied()

    def _set_role(self) -> None:
        may = self.session.may("analyst")
        editable = [self.threshold, self.window, self.update_interval, self.high, self.medium]
        for w in [*editable, *self.toggles.values()]:
            w.disabled = not may
        if not may:
            self.apply_button.disabled = True
            self.confirm.layout.display = "none"
        role = html.escape(self.session.grant.role)
        self.readonly.value = (
            ""
            if may
            else f'<span class="wb-note">read-only: this page was opened with a {role} token; '
            "an analyst's token can change the settings</span>"
        )

    def _show_applied(self) -> None:
        p = self.session.params()
        policy = self.session.policy
        on = sum(p[f"use_{n}"] for n in COMPONENTS)
        took = "" if self.apply_ms is None else f" · published in {self.apply_ms:,.0f} ms"
        version = self.session.version
        who = (
            "defaults"
            if version is None
            else f"v{version.version} by {html.escape(version.changed_by.split(' (')[0])}"
        )
        workers = self.session.live_workers().values()
        number = 0 if version is None else version.version
        applying = sum(1 for f in workers if f["settings_version"] == number)
        self.applied.value = (
            f'<span class="wb-note">workers apply: threshold <b class="wb-pipeline-threshold">'
            f"{p['anomaly_threshold']:.2f}</b> · window {p['window_size']:,} readings · model "
            f"update every {p['model_update_interval']:,} readings · {on} of {len(COMPONENTS)} "
            f"detectors on · high ≥ {policy.high:.2f}, medium ≥ {policy.medium:.2f} · {who} · "
            f'<span class="wb-applying">{applying} of {len(workers)} workers on it</span>'
            f"{took}</span>"
        )

    async def _preview(self) -> None:
        self.preview_button.disabled = True
        self.progress.layout.visibility = "visible"
        self.progress.value = 0

        def step(done: int, total: int) -> None:
            self.progress.value = done / max(total, 1)

        try:
            result = await self.session.preview(
                self.params(), self.policy(), self.minutes.value, step
            )
        except ValueError as exc:
            self.preview_result.value = (
                f'<span style="color:#d62728">{html.escape(str(exc))}</span>'
            )
        else:
            live = self.session.alerts_in_window(result.window_minutes)
            self.preview_result.value = (
                f"<b>preview</b>: these settings would have raised {html.escape(result.summary())}"
                f"; the workers raised {live} in the same span"
            )
        finally:
            self.preview_button.disabled = False
            self.progress.layout.visibility = "hidden"

    def refresh(self) -> None:
        """Role, the settings in force, and the live effect: alerts per minute and, with the
        simulator's truth, precision and recall."""
        self._set_role()
        self._sync()
        self._show_applied()
        per_min = self.session.alerts.opened_within(60)
        line = f"live effect: {per_min} alerts opened in the last minute ({per_min} /min)"
        q = self.session.quality()
        if q is not None:
            line += (
                f" · precision {q.precision:.2f}, recall {q.recall:.2f} "
                f"({q.alerts} closed alerts, {q.truths} injected anomalies since settings applied)"
            )
        self.effect.value = f'<span class="wb-note wb-effect">{line}</span>'
