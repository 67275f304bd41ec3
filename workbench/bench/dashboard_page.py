"""What a viewer does on the live dashboard page, for the browser test and the benchmark."""

from __future__ import annotations

import time
from typing import Any

READY = ".wb-dash .wb-pipeline-threshold"

_WATCH_PROBE = """() => {
  window.__wbLatency = [];
  window.__wbView = [];
  const probe = document.querySelector('.wb-trend-probe');
  new MutationObserver(() => {
    const now = Date.now();
    try {
      for (const [ts, heard] of JSON.parse(probe.innerText || '[]')) {
        window.__wbLatency.push(now - ts);
        window.__wbView.push(now - heard);
      }
    } catch (e) {}
  }).observe(probe, {subtree: true, childList: true, characterData: true});
}"""


def open_dashboard(context: Any, url: str, timeout_s: float = 90.0) -> Any:
    """A new page on the dashboard, once its widgets are on screen."""
    page = context.new_page()
    page.goto(url, timeout=timeout_s * 1000)
    page.wait_for_selector(READY, timeout=timeout_s * 1000)
    return page


def pipeline_threshold(page: Any) -> str:
    """The threshold the page says the workers apply."""
    return page.inner_text(".wb-pipeline-threshold").strip()


def set_threshold(page: Any, value: float, timeout_s: float = 10.0) -> float:
    """As an analyst: type ``value`` into the threshold slider, apply it to all workers and
    confirm; seconds from the confirmation until the page shows it in force.

    That is the round trip browser → kernel → settings topic → kernel → browser; the workers
    apply it within their next second (``workers_on_it``).
    """
    readout = page.locator(".wb-threshold .widget-readout")
    want = f"{value:.2f}"
    readout.click()
    page.keyboard.press("Control+A")
    page.keyboard.type(want)
    page.keyboard.press("Enter")
    apply = page.locator(".wb-apply")
    page.wait_for_function(
        "() => !document.querySelector('.wb-apply')?.disabled", timeout=timeout_s * 1000
    )
    apply.click()
    confirm = page.locator(".wb-confirm")
    confirm.wait_for(state="visible", timeout=timeout_s * 1000)
    started = time.perf_counter()
    confirm.click()
    page.wait_for_function(
        "want => document.querySelector('.wb-pipeline-threshold')?.innerText.trim() === want",
        arg=want,
        timeout=timeout_s * 1000,
        polling="raf",
    )
    return time.perf_counter() - started


def workers_on_it(page: Any) -> str:
    """What the tuning panel says of the workers that apply the settings in force."""
    return page.inner_text(".wb-applying").strip()


def acknowledge_first_alert(page: Any, timeout_s: float = 30.0) -> tuple[str, str]:
    """As an analyst: pick the newest alert in the feed and acknowledge it; (its id, device)."""
    options = ".wb-alert-pick select option"
    page.wait_for_selector(options, state="attached", timeout=timeout_s * 1000)
    page.select_option(".wb-alert-pick select", index=0)
    page.locator(".wb-ack").click()
    said = page.wait_for_function(  # null until the kernel says it is done
        "() => { const m = document.querySelector('.wb-ack-said')?.innerText"
        ".match(/(\\S+) \\((\\S+)\\) is acknowledged/); return m ? [m[1], m[2]] : null; }",
        timeout=timeout_s * 1000,
    )
    alert_id, device = said.json_value()
    return alert_id, device


def find_in_history(page: Any, device_id: str, text: str, timeout_s: float = 30.0) -> None:
    """Filter the alert history by ``device_id`` and wait until a row shows ``text``."""
    page.locator(".wb-card", has_text="Alert history").locator("input").fill(device_id)
    page.wait_for_function(
        "t => document.querySelector('.wb-alert-history')?.innerText.includes(t)",
        arg=text,
        timeout=timeout_s * 1000,
    )


def select_device(page: Any, device_id: str) -> None:
    """Follow one device in the trend chart."""
    box = page.locator(".wb-device input")
    box.fill(device_id)
    box.press("Enter")
    page.wait_for_function(
        "d => document.body.innerText.includes(d + ':')", arg=device_id, timeout=10_000
    )


def watch_latency(page: Any) -> None:
    """From now on, record how old each reading is when its point reaches the trend chart."""
    page.evaluate(_WATCH_PROBE)


def latencies_ms(page: Any) -> list[float]:
    """How old each point's data was when it reached the screen (since ``watch_latency``)."""
    return page.evaluate("() => window.__wbLatency || []")


def view_latencies_ms(page: Any) -> list[float]:
    """The view's own part of it: from the page's kernel hearing of each point to the screen."""
    return page.evaluate("() => window.__wbView || []")


def overflowing(page: Any) -> list[str]:
    """What sticks out past the viewport's right edge ("tag.class: N px"); empty when it fits."""
    return page.evaluate(
        """() => {
          const w = document.documentElement.clientWidth;
          const out = [];
          const page = document.documentElement.scrollWidth - w;
          if (page > 1) out.push(`page: ${page} px`);
          for (const el of document.querySelectorAll('.wb-dash *')) {
            // inside a scrolling table or a chart (clipped to it) content may extend: boxes may not
            if (el.parentElement.closest('.wb-scroll, .bqplot')) continue;
            const r = el.getBoundingClientRect();
            const cls = el.className.baseVal ?? el.className;
            if (r.width > 0 && r.height > 0 && r.right - w > 1)
              out.push(`${el.tagName.toLowerCase()}.${cls}: ${Math.round(r.right - w)} px`);
          }
          return out;
        }"""
    )
