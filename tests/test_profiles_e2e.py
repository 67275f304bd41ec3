"""A fleet that only a profile file defines, end to end: `workbench serve`, `workbench worker` and
`workbench dashboard` with ``--profiles plant.toml`` on their own real broker, the dashboard in
Chromium.

The plant's gateway names the device ``serial``, sends epoch milliseconds and the type in
``model``: pumps with 8 gauges, water meters with a counter, a door switch with a binary metric.
Its readings are accepted, crafted malformed ones reach the dead-letter topic with the reason
that names their field, faults injected into the data raise alerts, `/api/devices` lists the
devices with their units, and the dashboard's pickers offer the profile's types and metrics
with units.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli_helpers import RunningCommand
from tests.kafka_helpers import PORT_BASE
from tests.waiting import eventually
from workbench.bench import dashboard_page as dash
from workbench.bench.browser import chromium
from workbench.config import TOPIC_DEADLETTER, TOPIC_READINGS, Settings
from workbench.explore.recent import read_recent
from workbench.profiles.load import load_profiles
from workbench.security.manage import create_token
from workbench.streams.clients import make_producer
from workbench.streams.deadletter import HEADER_REASON

pytestmark = pytest.mark.kafka
PLANT = Path(__file__).parent / "data" / "profiles" / "plant.toml"
KAFKA_PORT = PORT_BASE + 400
API_PORT = PORT_BASE + 410
DASHBOARD_PORT = PORT_BASE + 420
ROUNDS = 400
"""Ten-second rounds of the plant's data, ending now."""
PUMP_LEVELS = {
    "inlet_pressure": (1.2, 0.02),
    "outlet_pressure": (6.5, 0.05),
    "flow": (120.0, 1.0),
    "vibration": (2.0, 0.05),
    "bearing_temperature": (60.0, 0.3),
    "motor_current": (48.0, 0.4),
    "motor_voltage": (400.0, 1.0),
    "speed": (2950.0, 5.0),
}
KNOCK_ROUND = 300
"""Pump P-0's vibration reads 25 mm/s in this round (a bearing knock)."""
SURGE = range(50, 56)
"""Meter M-0's minutes in which it counts five times its usual flow."""
MALFORMED = [  # (wire record, what its dead-letter reason must say)
    ({"serial": "P-bad", "t_ms": "yesterday"}, "`$.t_ms`"),
    ({"serial": "P-bad", "vibration": 250.0}, "vibration"),  # above the declared 100 mm/s
    ({"serial": "P-bad", "model": "boiler"}, "Invalid value 'boiler' - at `$.model`"),
    ({"serial": "P-bad", "flow": None}, "missing required field `flow`"),
]


def plant_readings(t0_ms: int) -> list[dict[str, Any]]:
    """Six pumps, three meters and a door over ROUNDS rounds, with the two faults."""
    rng = np.random.default_rng(7)
    out: list[dict[str, Any]] = []
    for i in range(ROUNDS):
        t_ms = t0_ms + 10_000 * i
        for p in range(6):
            values = {k: float(mean + rng.normal(0, sd)) for k, (mean, sd) in PUMP_LEVELS.items()}
            if p == 0 and i == KNOCK_ROUND:
                values["vibration"] = 25.0
            out.append(
                {"model": "pump", "serial": f"P-{p}", "t_ms": t_ms, "n": i}
                | {k: round(v, 3) for k, v in values.items()}
            )
        if i % 6 == 0:
            k = i // 6
            for m in range(3):
                surged = 2.0 * max(0, min(k, SURGE.stop) - SURGE.start) if m == 0 else 0.0
                volume = round(1000 + 0.5 * k + surged, 3)
                out.append({"model": "meter", "serial": f"M-{m}", "t_ms": t_ms, "n": k} | {
                    "volume": volume
                })  # fmt: skip
        if i % 3 == 0:
            out.append(
                {"model": "door", "serial": "D-1", "t_ms": t_ms, "n": i // 3}
                | {"open": (i // 3) % 40 == 0}
            )
    return out


def malformed(t_ms: int) -> list[dict[str, Any]]:
    good = {"model": "pump", "t_ms": t_ms, "n": 1} | {k: m for k, (m, _) in PUMP_LEVELS.items()}
    return [
        {k: v for k, v in (good | changes).items() if v is not None} for changes, _ in MALFORMED
    ]


def _get(base: str, path: str, token: str) -> Any:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`workbench serve` (its own broker), a `workbench worker` and `workbench dashboard` on the
    plant's profiles."""
    data = tmp_path_factory.mktemp("plant")
    env = {
        "WORKBENCH_KAFKA_PORT": str(KAFKA_PORT),
        "WORKBENCH_DATA_DIR": str(data),
        "KAFKA_BOOTSTRAP_SERVERS": None,
        "WORKBENCH_PROFILES": None,
    }
    settings = Settings.from_env(bootstrap_servers=f"localhost:{KAFKA_PORT}", data_dir=data)
    with RunningCommand(
        "serve", "--profiles", str(PLANT), "--port", str(API_PORT), env=env
    ) as serve:
        api = serve.wait_for(r"serving on (http://\S+)", timeout_s=180).group(1)
        bootstrap = f"localhost:{KAFKA_PORT}"
        with (
            RunningCommand(
                *["worker", "--profiles", str(PLANT), "--bootstrap-servers", bootstrap],
                *["--start", "earliest"],
                env=env,
            ) as worker,
            RunningCommand(
                *["dashboard", "--profiles", str(PLANT), "--bootstrap-servers", bootstrap],
                *["--port", str(DASHBOARD_PORT)],
                env=env,
            ) as dashboard,
        ):
            link = dashboard.wait_for(r"dashboard: (http://\S+)", timeout_s=120).group(1)
            every_partition = r"worker \S+: partitions 0 \(lag \d+ msgs\), 1 .* 5 \(lag"
            worker.wait_for(every_partition, timeout_s=120)
            token, _ = create_token(settings, "plant e2e", "viewer", "e2e test")
            yield {"api": api, "token": token, "link": link, "settings": settings}
            assert dashboard.stop(signal.SIGINT, 60)[0] == 0, dashboard.output
            assert worker.stop(signal.SIGINT, 60)[0] == 0, worker.output
        assert serve.stop(signal.SIGINT, 60)[0] == 0, serve.output


@pytest.fixture(scope="module")
def page(plant: dict[str, Any]) -> Iterator[Any]:
    with chromium() as context:
        yield dash.open_dashboard(context, plant["link"])


def _trend_pickers(page: Any) -> tuple[list[str], list[str]]:
    """The options of the trend panel's type picker and of the metric picker beside it."""
    options = page.evaluate(
        "() => Array.from(document.querySelectorAll('select'),"
        " s => Array.from(s.options, o => o.textContent.replaceAll('\\u00a0', ' ')))"
    )
    at = next(i for i, o in enumerate(options) if "door" in o)
    return options[at], options[at + 1]


@pytest.fixture(scope="module")
def sent(plant: dict[str, Any], page: Any) -> dict[str, Any]:
    """The plant's data and the malformed records, produced once the page is listening: its
    kernel reads from the end of the topic, so not before its consumer knows its position (the
    overview's consumer lag is a number then)."""
    page.wait_for_function(
        """() => [...document.querySelectorAll('.wb-stat')].some(s =>
            s.querySelector('.k')?.textContent === 'consumer lag'
            && /\\d/.test(s.querySelector('.v')?.textContent ?? ''))""",
        timeout=60_000,
    )
    now_ms = int(time.time() * 1000)
    readings = plant_readings(now_ms - 10_000 * ROUNDS)
    bad = malformed(now_ms)
    producer = make_producer(plant["settings"])
    try:
        for r in [*readings, *bad]:
            producer.send(TOPIC_READINGS, json.dumps(r).encode(), key=r["serial"].encode())
        producer.flush()
    finally:
        producer.close()
    return {"readings": readings, "since_ms": now_ms - 60_000}


def test_the_pickers_offer_the_profiles_types_and_metrics_with_units(page: Any) -> None:
    profiles = load_profiles(PLANT)
    types, metrics = _trend_pickers(page)
    assert types == ["pump", "meter", "door"]
    assert metrics == [profiles.label(m) for m in profiles.type("pump").metric_names]
    assert len(metrics) == 8 and metrics[3] == "vibration (mm/s)"
    page.locator("select", has=page.locator("option", has_text="door")).select_option("meter")
    assert eventually(lambda: _trend_pickers(page)[1] == ["volume (m³)"], 10)


def test_readings_are_accepted_and_the_devices_listed_with_units(
    plant: dict[str, Any], sent: dict[str, Any]
) -> None:
    def listed() -> dict[str, Any] | None:
        devices = _get(plant["api"], "/api/devices?limit=100", plant["token"])
        last = {d["device_id"]: d["last_reading"]["seq"] for d in devices["items"]}
        return devices if last.get("P-5") == ROUNDS - 1 else None  # all of the data handled

    assert eventually(lambda: listed() is not None, 120, every_s=1)
    devices = {d["device_id"]: d for d in listed()["items"]}
    assert sorted(devices) == ["D-1", "M-0", "M-1", "M-2", *(f"P-{p}" for p in range(6))]
    assert "P-bad" not in devices  # every crafted record was refused
    assert devices["P-3"]["units"]["vibration"] == "mm/s" and len(devices["P-3"]["units"]) == 8
    assert devices["M-1"]["units"] == {"volume": "m³"}
    assert devices["D-1"]["units"] == {"open": "closed/open"}


def test_malformed_records_are_dead_lettered_with_the_rule_they_broke(
    plant: dict[str, Any], sent: dict[str, Any]
) -> None:
    def reasons() -> list[str]:
        records = read_recent(plant["settings"], TOPIC_DEADLETTER, 100, timeout_s=30)
        return [dict(r.headers)[HEADER_REASON].decode() for r in records]

    assert eventually(lambda: len(reasons()) >= len(MALFORMED), 60, every_s=1)
    got = reasons()
    assert len(got) == len(MALFORMED), got  # the plant's good readings are all accepted
    for _, says in MALFORMED:
        assert any(says in reason for reason in got), (says, got)


def test_injected_faults_raise_alerts(
    page: Any, plant: dict[str, Any], sent: dict[str, Any]
) -> None:
    def alerts() -> set[tuple[str, str]]:
        listed = _get(plant["api"], "/api/anomalies?limit=100", plant["token"])["items"]
        return {(a["device_id"], a["kind"]) for a in listed}

    assert eventually(lambda: {"P-0", "M-0"} <= {d for d, _ in alerts()}, 120, every_s=1)
    found = alerts()
    assert ("M-0", "counter_surge") in found, found
    assert {d for d, _ in found} <= {"P-0", "M-0"}, found  # nothing on the healthy devices
    # The dashboard's own pipeline saw them too.
    feed = page.locator(".wb-alert-feed")
    assert eventually(lambda: "P-0" in feed.inner_text() and "M-0" in feed.inner_text(), 60)
