"""The Voilà dashboard end to end: `workbench up` (real Kafka, simulator, Voilà) in Chromium.

Screenshots (desktop and phone) are saved under ``artifacts/``.
"""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.kafka_helpers import PORT_BASE, start_workbench_up
from workbench import schema
from workbench.bench import dashboard_page as dash
from workbench.bench.browser import chromium
from workbench.config import Settings
from workbench.security.manage import create_token, revoke_token
from workbench.security.tokens import authenticate
from workbench.streams.clients import make_producer
from workbench.ui.export import ALERT_COLUMNS, reading_header

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
KAFKA_PORT = PORT_BASE + 300
DASHBOARD_PORT = PORT_BASE + 350


@pytest.fixture(scope="module")
def workbench_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """`workbench up` with its dashboard; Ctrl-C at the end must leave nothing running."""
    data = tmp_path_factory.mktemp("up-dashboard")
    settings = Settings.from_env(bootstrap_servers=f"localhost:{KAFKA_PORT}", data_dir=data)
    with start_workbench_up(
        KAFKA_PORT,
        data,
        *["--devices", "200", "--rate", "1000", "--seed", "5"],
        *["--dashboard-port", str(DASHBOARD_PORT)],
    ) as up:
        url = up.wait_for(r"dashboard: (http://\S+)", timeout_s=180).group(1)
        assert url.startswith(f"http://localhost:{DASHBOARD_PORT}/?token=wb_"), up.output
        yield {"url": url, "settings": settings}
        code, _ = up.stop(signal.SIGINT, 90)
        assert code == 0, up.output
    # The link's token died with the server.
    assert authenticate(url.split("token=")[1], settings) is None
    leftovers = subprocess.run(
        ["pgrep", "-f", f"--port={DASHBOARD_PORT}"], capture_output=True, text=True
    ).stdout
    assert leftovers == "", "Voilà is still running after Ctrl-C"


def _link(workbench_up: dict, name: str, role: str) -> str:
    token, _ = create_token(workbench_up["settings"], name, role, "e2e test")
    return workbench_up["url"].split("?")[0] + f"?token={token}"


@pytest.fixture(scope="module")
def page(workbench_up: dict) -> Iterator:
    """A page opened with an analyst's token (the printed link is a viewer's)."""
    with chromium() as context:
        yield dash.open_dashboard(context, _link(workbench_up, "e2e analyst", "analyst"))


def _status(url: str) -> tuple[int, str]:
    """Status and redirect target of a GET, redirects not followed."""

    class Stay(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *_args: object, **_kwargs: object) -> None:
            return None

    try:
        with urllib.request.build_opener(Stay).open(url, timeout=30) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def test_the_dashboard_admits_only_workbench_tokens(workbench_up: dict) -> None:
    base = workbench_up["url"].split("?")[0]
    # A good token is traded for the session cookie, then the page's clean address.
    assert _status(workbench_up["url"]) == (302, "/")
    refused = [_status(base), _status(base + "?token=wb_0000_guess")]
    token, record = create_token(workbench_up["settings"], "e2e viewer", "viewer", "e2e test")
    assert _status(f"{base}?token={token}") == (302, "/")
    revoke_token(workbench_up["settings"], record["token_id"], "e2e test")
    refused.append(_status(f"{base}?token={token}"))
    for status, location in refused:  # sent to the login form, never shown the page
        assert status == 302 and location.startswith("/login"), (status, location)


def _svg(page, title: str) -> str:
    return page.locator(".wb-card", has_text=title).locator("svg").first.inner_html()


def test_charts_change_over_time(page) -> None:
    page.wait_for_function(
        "() => /[1-9][\\d,]* msgs\\/s/.test(document.body.innerText)", timeout=60_000
    )
    before_trend, before_map = _svg(page, "Trend"), _svg(page, "Map")
    before_total = page.locator(".wb-stat", has_text="total").inner_text()
    time.sleep(4)
    assert _svg(page, "Trend") != before_trend
    assert page.locator(".wb-stat", has_text="total").inner_text() != before_total
    assert _svg(page, "Map") != before_map or "devices drawn" in page.inner_text("body")
    page.wait_for_function(  # the simulator's energy registers, in the counters panel
        "() => /energy \\(kWh\\) by site[\\s\\S]* kWh\\/h/.test("
        "document.querySelector('.wb-counters')?.innerText)",
        timeout=30_000,
    )


def _thermostat(seq: int, temperature: float) -> schema.Thermostat:
    return schema.Thermostat(
        device_id="thermostat-e2e-01",
        ts=datetime.now(UTC),
        seq=seq,
        lat=52.52,
        lon=13.40,
        firmware="4.2.1",
        temperature=temperature,
        humidity=45.0,
        power=900.0,
        energy=100.0 + seq * 0.001,
    )


def test_an_injected_anomaly_appears_in_the_alert_feed(page, workbench_up: dict) -> None:
    producer = make_producer(workbench_up["settings"], client_id="e2e-injector")
    try:
        for seq in range(120):
            reading = _thermostat(seq, 21.0 + 0.05 * (seq % 3))
            producer.send("iot.readings", schema.encode(reading), key=reading.device_id.encode())
            time.sleep(0.1)
        spike = _thermostat(120, 85.0)
        producer.send("iot.readings", schema.encode(spike), key=spike.device_id.encode())
        producer.flush(10)
    finally:
        producer.close()
    feed = page.locator(".wb-alert-feed")
    # The spike's alert, explained with the observed value and its unit.
    spike_line = "sudden spike in temperature on thermostat-e2e-01: observed 85.00 °C"
    page.wait_for_function(
        "line => document.querySelector('.wb-alert-feed')?.innerText.includes(line)",
        arg=spike_line,
        timeout=30_000,
    )
    assert "spike" in feed.inner_text()
    history = page.locator(".wb-alert-history")
    page.locator(".wb-card", has_text="Alert history").locator("input").fill("thermostat-e2e-01")
    page.wait_for_function(
        "() => /[1-9]\\d* of \\d+ matching/.test("
        "document.querySelector('.wb-alert-history').innerText)",
        timeout=10_000,
    )
    assert "thermostat-e2e-01" in history.inner_text()


def test_an_analysts_threshold_reaches_every_worker(page) -> None:
    assert dash.pipeline_threshold(page) == "0.10"
    seconds = dash.set_threshold(page, 0.35)
    assert dash.pipeline_threshold(page) == "0.35"
    assert seconds < 10
    page.wait_for_function(  # the one worker of `workbench up` applies it
        "() => document.querySelector('.wb-applying')?.innerText.trim() === '1 of 1 workers on it'",
        timeout=20_000,
    )
    dash.set_threshold(page, 0.10)


def test_a_second_page_sees_what_the_first_acknowledged_and_a_viewer_cannot_act(
    page, workbench_up: dict
) -> None:
    # A late viewer with the printed (viewer) link, signed in on its own: the page is on
    # 127.0.0.1, the analyst's on localhost, so the browser keeps their sessions apart.
    link = workbench_up["url"].replace("//localhost:", "//127.0.0.1:")
    viewer = dash.open_dashboard(page.context, link)
    try:
        viewer.wait_for_selector(".wb-alert-feed .wb-alert", timeout=30_000)  # at once
        _acked, device = dash.acknowledge_first_alert(page)
        dash.find_in_history(viewer, device, "acknowledged by e2e analyst")
        # The viewer's page offers no way to act: settings read-only, no acknowledge/clear.
        viewer.wait_for_function(
            "() => document.querySelector('.wb-readonly')?.innerText.includes('read-only: this"
            " page was opened with a viewer token')",
            timeout=10_000,
        )
        readout = ".wb-threshold .widget-readout"
        assert viewer.eval_on_selector(readout, "r => r.contentEditable") == "false"
        assert viewer.eval_on_selector(".wb-apply", "b => b.disabled") is True
        assert viewer.locator(".wb-ack").count() == 1 and not viewer.locator(".wb-ack").is_visible()
        assert viewer.locator(".wb-alert-feed").inner_text()  # it shows the alerts all the same
    finally:
        viewer.close()


def test_csv_export_downloads_the_followed_devices_readings_and_the_alerts(page) -> None:
    dash.select_device(page, "thermostat-0001")
    page.wait_for_function(  # its last minutes, read from its partition
        "() => /thermostat-0001: [1-9][\\d,]* points/.test(document.body.innerText)",
        timeout=30_000,
    )
    page.locator(".wb-export").click()
    links = page.locator("a.wb-download")
    links.first.wait_for(timeout=20_000)
    contents = []
    for i in range(2):
        with page.expect_download() as info:
            links.nth(i).click()
        contents.append((info.value.suggested_filename, Path(info.value.path()).read_text()))
    (readings_name, readings), (alerts_name, alerts) = contents
    assert readings_name.startswith("readings-") and readings_name.endswith(".csv")
    rows = list(csv.reader(io.StringIO(readings)))
    assert tuple(rows[0]) == reading_header()
    assert len(rows) > 20
    assert {r[1] for r in rows[1:]} == {"thermostat-0001"}
    assert alerts_name.startswith("alerts-")
    alert_rows = list(csv.reader(io.StringIO(alerts)))
    assert tuple(alert_rows[0]) == ALERT_COLUMNS
    assert len(alert_rows) > 1


def test_markup_typed_into_the_trend_box_is_shown_as_text(page) -> None:
    page.evaluate("() => { window.__wbInjected = false; }")
    typed = "<img src=y onerror=window.__wbInjected=true>"
    dash.select_device(page, typed)  # waits until the page shows it as text
    trend = page.locator(".wb-card", has_text="Trend")
    assert trend.locator("img").count() == 0
    assert page.evaluate("() => window.__wbInjected") is False
    box = page.locator(".wb-device input")
    box.fill("")  # back to the type mean
    box.press("Enter")
    page.wait_for_function(
        "() => document.body.innerText.includes('all devices (mean):')", timeout=10_000
    )


def test_layout_fits_a_phone_and_screenshots_are_saved(page) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        # Voilà scrolls inside the page: a tall viewport captures the whole dashboard.
        page.set_viewport_size({"width": 1400, "height": 2000})
        time.sleep(1)
        page.screenshot(path=ARTIFACTS / "dashboard-desktop.png")
        page.set_viewport_size({"width": 390, "height": 844})
        time.sleep(1.5)
        assert dash.overflowing(page) == []
        page.set_viewport_size({"width": 390, "height": 5200})
        time.sleep(1)
        page.screenshot(path=ARTIFACTS / "dashboard-phone.png")
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})
