"""The live API against a real server on loopback, fed by the real broker: authentication and
roles on every route and socket, alerts end to end, acknowledgements and settings in the audit
log, retention, slow clients, TLS and pseudonymisation."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.cli_helpers import RunningCommand
from tests.kafka_helpers import env_reading
from tests.postgres_helpers import throwaway_postgres
from tests.server_helpers import Api, start_api, ws_connect, ws_status
from tests.test_store import make_alert
from tests.waiting import eventually
from tests.worker_helpers import Namespace
from workbench.broker import LocalBroker
from workbench.config import Settings
from workbench.profiles.compile import compile_profiles
from workbench.profiles.load import load_profiles
from workbench.schema import METRICS, UNITS, encode
from workbench.security.pseudonym import Pseudonymiser
from workbench.security.tokens import ROLES
from workbench.simulator import run_simulator
from workbench.streams.clients import make_producer
from workbench.streams.records import read_partitions
from workbench.streams.settings_topic import decode_version

pytestmark = pytest.mark.kafka
TLS = Path(__file__).parent / "data" / "tls"
PLANT = compile_profiles(load_profiles(Path(__file__).parent / "data" / "profiles" / "plant.toml"))


@pytest.fixture(scope="module")
def api(broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    # Its tests send hundreds of wrong tokens on purpose: no throttle (tested on its own).
    running = start_api(broker, tmp_path_factory.mktemp("api"), max_queue=4, sign_in_failures=10**6)
    yield running
    running.running.stop()


ROUTES = [
    ("GET", "/api/openapi.json", "viewer", None),
    ("GET", "/api/metrics", "viewer", None),
    ("GET", "/api/devices", "viewer", None),
    ("GET", "/api/anomalies", "viewer", None),
    ("GET", "/api/anomalies/none", "viewer", None),
    ("POST", "/api/anomalies/none/ack", "analyst", None),
    ("POST", "/api/anomalies/none/clear", "analyst", None),
    ("GET", "/api/settings", "viewer", None),
    ("PUT", "/api/settings", "analyst", {}),
    ("GET", "/api/retention", "viewer", None),
    ("PUT", "/api/retention", "admin", {"days": 30}),
    ("GET", "/api/audit", "admin", None),
    ("GET", "/api/tokens", "admin", None),
    ("POST", "/api/tokens", "admin", {"name": "made-by-route-test", "role": "viewer"}),
    ("DELETE", "/api/tokens/none", "admin", None),
    ("GET", "/api/no-such-route", "viewer", None),
]


@pytest.mark.parametrize(("method", "path", "least", "body"), ROUTES)
def test_every_route_refuses_a_missing_wrong_or_revoked_token_and_a_lower_role(
    api: Api, method: str, path: str, least: str, body: object
) -> None:
    wrong = api.tokens["viewer"][:-2] + "xx"
    for token in (None, wrong, "revoked", "Bearer nonsense"):
        status, reply = api.http(method, path, token, body)
        assert status == 401, (token, reply)
        assert "token" in reply["error"]
    for role in ROLES[: ROLES.index(least)]:
        status, reply = api.http(method, path, role, body)
        assert status == 403 and least in reply["error"], (role, reply)
    status, _ = api.http(method, path, least, body)
    assert status not in (401, 403)


def test_failed_sign_ins_are_throttled_per_client(broker: LocalBroker, tmp_path: Path) -> None:
    throttled = start_api(broker, tmp_path, sign_in_failures=3)
    try:
        good = throttled.tokens["viewer"]
        assert throttled.http("GET", "/api/metrics", "viewer")[0] == 200
        statuses = [throttled.http("GET", "/api/metrics", good[:-2] + "xx")[0] for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        status, reply = throttled.http("GET", "/api/metrics", "viewer")  # even the right one
        assert status == 429 and "too many failed sign-ins" in reply["error"]
        assert throttled.http("GET", "/api/metrics", None)[0] == 401  # no token: not counted
    finally:
        throttled.running.stop()


@pytest.mark.parametrize("path", ["/", "/metrics", "/alerts"])
def test_every_socket_refuses_a_missing_wrong_or_revoked_token(
    api: Api, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = api.server.ws_url + path
    wrong = api.tokens["viewer"][:-2] + "xx"

    async def statuses() -> list[int]:
        refused = [await ws_status(url, t) for t in (None, wrong, api.tokens["revoked"])]
        ws = await ws_connect(url, api.tokens["viewer"], header=False)  # ?token= for browsers
        ws.close()
        return [*refused, await ws_status(url, api.tokens["viewer"])]

    with caplog.at_level("INFO", logger="tornado"):
        assert asyncio.run(statuses()) == [401, 401, 401, 101]
        denied = asyncio.run(ws_status(url + "?token=" + wrong))
    assert denied == 401
    logged = caplog.text
    assert "token=[redacted]" in logged and wrong not in logged  # tokens never reach the logs
    assert api.tokens["viewer"] not in logged


def _simulate(api: Api, devices: int = 30, count: int = 6000) -> None:
    """Replay a short fleet life with frequent anomalies into the server's topic, at once."""
    stats = run_simulator(
        api.settings,
        devices=devices,
        rate=devices / 2.0,
        count=count,
        anomaly_rate=1.0,
        seed=3,
        readings_topic=api.topic,
        truth_topic=f"{api.topic}.truth",
        backfill_s=count * 4.0 / devices,  # twice the replayed span: all of it is in the past
    )
    assert stats.sent == count


def test_alerts_reach_sockets_store_and_rest(api: Api, tmp_path: Path) -> None:
    """A worker on the server's topics detects; the server stores and relays what it publishes."""
    workers = Namespace(api.settings, tmp_path, prefix=api.prefix)

    async def listen() -> tuple[list[dict], list[dict], list[dict]]:
        alerts_ws = await ws_connect(api.server.ws_url + "/alerts", api.tokens["viewer"])
        readings_ws = await ws_connect(
            api.server.ws_url + "/?type=smart_meter", api.tokens["viewer"]
        )
        metrics_ws = await ws_connect(api.server.ws_url + "/metrics", api.tokens["viewer"])
        loop = asyncio.get_running_loop()
        joined = await loop.run_in_executor(  # a worker process takes a while to start
            None, eventually, lambda: workers.owned().get("api-worker"), 120
        )
        assert joined, workers.figures()
        await loop.run_in_executor(None, _simulate, api)
        got: dict[str, list[dict]] = {"alerts": [], "readings": [], "metrics": []}
        deadline = time.monotonic() + 60
        for ws, kind in ((alerts_ws, "alerts"), (readings_ws, "readings"), (metrics_ws, "metrics")):
            while not got[kind] and time.monotonic() < deadline:
                message = json.loads(await asyncio.wait_for(ws.read_message(), 60))
                assert message["type"] == kind
                got[kind].extend(message[kind] if kind != "metrics" else [message])
            ws.close()
        return got["alerts"], got["readings"], got["metrics"]

    with workers.worker("api-worker") as worker:
        alerts, readings, metrics = asyncio.run(listen())
        assert alerts and readings and metrics, worker.output[-3000:]
        assert {r["device_type"] for r in readings} == {"smart_meter"}
        assert metrics[0]["readings"]["status"] == "consuming"
        seen = api.running.wait_for(
            "the worker's figures in /api/metrics",
            lambda: (
                (w := api.http("GET", "/api/metrics")[1]["workers"].get("api-worker"))
                and w["pipeline"]["total"] > 0
                and w
            ),
        )
        assert seen["partitions"] == list(range(6))

    stored = api.running.wait_for(
        "the alerts in the store",
        lambda: (r := api.http("GET", "/api/anomalies?limit=1000")[1])["total"] and r,
    )
    ids = {a["alert_id"] for a in stored["items"]}
    assert {a["alert_id"] for a in alerts} <= ids
    # The store may hold the alerts before the server has relayed every device's readings.
    devices = api.running.wait_for(
        "all 30 simulated devices in /api/devices",
        lambda: (
            (r := api.http("GET", "/api/devices?limit=1000"))[0] == 200
            and r[1]["total"] == 30
            and r[1]
        ),
    )
    assert all(d["last_reading"]["device_id"] == d["device_id"] for d in devices["items"])
    assert all(
        d["units"] == {m: UNITS[m] for m in METRICS[d["device_type"]]} for d in devices["items"]
    )
    assert {a["device_id"] for a in stored["items"]} <= {d["device_id"] for d in devices["items"]}


def test_devices_of_a_fleet_defined_only_by_its_profile_are_listed_with_units(
    broker: LocalBroker, tmp_path: Path
) -> None:
    plant = start_api(broker, tmp_path, profiles=PLANT)
    try:
        t_ms = int(time.time() * 1000)
        records = [
            {"model": "meter", "serial": "M-9", "t_ms": t_ms, "n": 3, "volume": 1234.5},
            {"model": "door", "serial": "D-2", "t_ms": t_ms, "open": True},
            {"model": "pump", "serial": "P-17", "t_ms": t_ms, "n": 4, "inlet_pressure": 1.2,
             "outlet_pressure": 6.5, "flow": 120.0, "vibration": 2.1, "bearing_temperature": 61.0,
             "motor_current": 48.0, "motor_voltage": 400.0, "speed": 2950},
        ]  # fmt: skip
        producer = make_producer(plant.settings)
        try:
            for r in records:
                producer.send(plant.topic, json.dumps(r).encode(), key=r["serial"].encode())
            producer.flush()
        finally:
            producer.close()
        listed = plant.running.wait_for(
            "the plant's three devices in /api/devices",
            lambda: (r := plant.http("GET", "/api/devices"))[1]["total"] == 3 and r[1],
        )
        by_id = {d["device_id"]: d for d in listed["items"]}
        meter, door, pump = by_id["M-9"], by_id["D-2"], by_id["P-17"]
        assert (meter["device_type"], meter["status"]) == ("meter", "ok")
        assert meter["units"] == {"volume": "m³"} and door["units"] == {"open": "closed/open"}
        last = meter["last_reading"]
        assert datetime.fromisoformat(last.pop("ts")) == datetime.fromisoformat(meter["last_seen"])
        assert last == {
            "device_type": "meter",
            "device_id": "M-9",  # the wire calls it "serial": the API names every field alike
            "seq": 3,
            "lat": None,  # the profile maps no position nor firmware
            "lon": None,
            "firmware": None,
            "volume": 1234.5,
        }
        assert door["last_reading"]["open"] is True and door["last_reading"]["seq"] is None
        assert pump["units"]["vibration"] == "mm/s" and len(pump["units"]) == 8
        doors = plant.http("GET", "/api/devices?type=door")[1]
        assert [d["device_id"] for d in doors["items"]] == ["D-2"]
        status, refused = plant.http("GET", "/api/devices?type=thermostat")
        assert status == 400 and "is not one of pump, meter, door" in refused["error"]
        described = plant.http("GET", "/api/openapi.json")[1]
        device = described["components"]["schemas"]["Device"]["properties"]
        assert device["device_type"]["enum"] == ["pump", "meter", "door"]
        assert "meter: volume (m³)" in device["last_reading"]["description"]
    finally:
        plant.running.stop()


def test_acknowledgements_record_who_and_when_and_are_audited(api: Api) -> None:
    # An incident of its own (a worker may close its incidents at any moment).
    api.server.alerts.upsert([make_alert(7001)])
    status, acked = api.http("POST", "/api/anomalies/a7001/ack", "analyst")
    assert status == 200 and acked["state"] == "acknowledged"
    assert acked["acknowledged_by"].startswith("test-analyst") and acked["acknowledged_at"]
    status, again = api.http("POST", "/api/anomalies/a7001/ack", "analyst")
    assert status == 409 and "is acknowledged (by test-analyst" in again["error"]
    status, audit = api.http("GET", "/api/audit?action=alert.acknowledge", "admin")
    entry = next(e for e in audit["items"] if "a7001" in e["target"])
    assert entry["actor"].startswith("test-analyst (analyst")
    assert entry["old"] == {"state": "active"} and entry["new"]["state"] == "acknowledged"
    filtered = api.http("GET", "/api/anomalies?state=acknowledged")[1]
    assert "a7001" in {a["alert_id"] for a in filtered["items"]}
    status, cleared = api.http("POST", "/api/anomalies/a7001/clear", "analyst")
    assert status == 200 and cleared["state"] == "cleared"
    assert cleared["cleared_by"].startswith("test-analyst")
    assert api.http("GET", "/api/audit?action=alert.clear", "admin")[1]["total"] >= 1


def test_settings_changes_are_published_for_the_workers_and_audited_bad_ones_refused(
    api: Api,
) -> None:
    status, before = api.http("GET", "/api/settings")
    assert status == 200 and before["detector"]["anomaly_threshold"] == 0.1
    change = {"detector": {"anomaly_threshold": 0.3, "use_ewma": True}, "severity": {"high": 0.9}}
    status, after = api.http("PUT", "/api/settings", "analyst", change)
    assert status == 200
    assert after["detector"]["anomaly_threshold"] == 0.3 and after["severity"]["high"] == 0.9
    published = [
        decode_version(r.value) for r in read_partitions(api.settings, api.topics.settings)
    ]
    assert [v.new for v in published] == [change]  # what every worker applies
    assert published[0].changed_by.startswith("test-analyst") and published[0].role == "analyst"
    assert published[0].settings == after
    audit = api.http("GET", "/api/audit?action=settings.update", "admin")[1]["items"][0]
    assert audit["old"] == {
        "detector": {"anomaly_threshold": 0.1, "use_ewma": False},
        "severity": {"high": 0.8},
    }
    assert audit["new"] == change
    for bad, says in [
        ({"detector": {"window_size": 5}}, "window_size=5 is out of range: allowed 10 to 10000"),
        ({"detector": {"speed": 1}}, "no detector setting 'speed'; allowed: anomaly_threshold"),
        ({"detector": {"use_forest": "yes"}}, "use_forest='yes': it must be True or False"),
        ({"severity": {"medium": 0.95}}, "medium=0.95 is out of range: allowed 0 to 0.9"),
        ({"detector": {"max_devices": 5}}, "no detector setting 'max_devices'"),
        ({"thresholds": {}}, "no settings section 'thresholds'; allowed: detector, severity"),
        ([1, 2], "the body must be a JSON object"),
    ]:
        status, reply = api.http("PUT", "/api/settings", "analyst", bad)
        assert status == 400 and says in reply["error"], (bad, reply)
    assert api.http("GET", "/api/settings")[1] == after
    assert api.http("GET", "/api/audit?action=settings.update", "admin")[1]["total"] == 1
    api.http("PUT", "/api/settings", "analyst", {"detector": {"anomaly_threshold": 0.1}})


def test_retention_change_deletes_older_alerts_and_is_audited(api: Api) -> None:
    api.server.alerts.upsert([make_alert(9001, days_ago=25), make_alert(9002, days_ago=5)])
    status, reply = api.http("PUT", "/api/retention", "admin", {"days": 20})
    assert status == 200 and reply["days"] == 20 and reply["deleted"] >= 1
    assert api.http("GET", "/api/anomalies/a9001")[0] == 404
    assert api.http("GET", "/api/anomalies/a9002")[0] == 200
    entry = api.http("GET", "/api/audit?action=retention.update", "admin")[1]["items"][0]
    assert (entry["old"], entry["new"]) == (30, 20)
    for bad in ({"days": 0}, {"days": "7"}, {"weeks": 2}, {"days": 10**6}):
        assert api.http("PUT", "/api/retention", "admin", bad)[0] == 400
    assert api.http("GET", "/api/retention")[1] == {"days": 20}
    api.http("PUT", "/api/retention", "admin", {"days": 30})


def test_bad_query_arguments_say_what_is_allowed(api: Api) -> None:
    for query, says in [
        ("severity=urgent", "severity='urgent' is not one of low, medium, high"),
        ("since=yesterday", "since='yesterday' is not an ISO 8601 time"),
        ("limit=0", "limit=0 is out of range: allowed 1 to 1000"),
        ("offset=x", "offset='x' is not a whole number"),
        ("state=open", "state='open' is not one of active, acknowledged, cleared"),
    ]:
        status, reply = api.http("GET", f"/api/anomalies?{query}")
        assert status == 400 and says in reply["error"], reply


def test_revoking_a_token_closes_its_open_sockets(api: Api) -> None:
    body = {"name": "short-lived", "role": "viewer"}
    status, made = api.http("POST", "/api/tokens", "admin", body)
    assert status == 201 and made["token"].startswith("wb_")

    async def run() -> tuple[object, int]:
        doomed = await ws_connect(api.server.ws_url + "/metrics", made["token"])
        kept = await ws_connect(api.server.ws_url + "/metrics", api.tokens["viewer"])
        await asyncio.wait_for(doomed.read_message(), 10)
        loop = asyncio.get_running_loop()
        status, _ = await loop.run_in_executor(
            None, api.http, "DELETE", f"/api/tokens/{made['token_id']}", "admin"
        )
        assert status == 200
        while (message := await asyncio.wait_for(doomed.read_message(), 10)) is not None:
            pass  # metrics already queued may still arrive; then the socket closes
        assert await asyncio.wait_for(kept.read_message(), 10) is not None
        kept.close()
        return message, doomed.close_code

    assert asyncio.run(run()) == (None, 4001)
    assert api.http("GET", "/api/metrics", made["token"])[0] == 401
    audit = api.http("GET", "/api/audit?action=token.revoke", "admin")[1]["items"]
    assert any(made["token_id"] in a["target"] for a in audit)


def test_a_failing_metrics_second_does_not_end_the_metrics_channel(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = api.server.feeds.metrics
    calls: list[float] = []

    def fails_once() -> dict:
        calls.append(time.time())
        if len(calls) == 1:
            raise RuntimeError("deque mutated during iteration")
        return real()

    monkeypatch.setattr(api.server.feeds, "metrics", fails_once)

    async def next_metrics_after_the_failure() -> dict:
        ws = await ws_connect(api.server.ws_url + "/metrics", api.tokens["viewer"])
        try:
            while True:
                message = json.loads(await asyncio.wait_for(ws.read_message(), 10))
                if len(calls) > 1 and message["at"] > calls[0]:
                    return message
        finally:
            ws.close()

    assert asyncio.run(next_metrics_after_the_failure())["readings"]["status"]


def _raw_socket_that_never_reads(port: int, path: str, token: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then reads nothing at all."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(
        f"GET {path}?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_a_slow_client_loses_its_oldest_messages_and_never_slows_the_others(api: Api) -> None:
    batches, per_batch = 200, 250
    total = batches * per_batch
    ours = {env_reading(1000 + d, 0).device_id for d in range(per_batch)}
    counted = api.http("GET", "/api/metrics")[1]["readings"]["total"]
    slow = _raw_socket_that_never_reads(api.server.port, "/", api.tokens["viewer"])

    def produce() -> None:
        producer = make_producer(api.settings)
        for b in range(batches):
            for d in range(per_batch):
                r = env_reading(1000 + d, b)
                producer.send(api.topic, encode(r), key=r.device_id.encode())
            producer.flush()
            time.sleep(0.02)
        producer.close()

    async def fast_clients() -> list[int]:
        url, token = api.server.ws_url + "/", api.tokens["viewer"]
        clients = [await ws_connect(url, token) for _ in range(3)]
        feeder = threading.Thread(target=produce)
        feeder.start()

        async def count(ws) -> int:
            seen = 0
            while seen < total:  # readings of this test's devices (earlier tests' may trail in)
                message = await asyncio.wait_for(ws.read_message(), 60)
                seen += sum(r["device_id"] in ours for r in json.loads(message)["readings"])
            ws.close()
            return seen

        counts = await asyncio.gather(*(count(ws) for ws in clients))
        feeder.join()
        return counts

    try:
        assert asyncio.run(fast_clients()) == [total] * 3  # every reading, nothing dropped
        metrics = api.http("GET", "/api/metrics")[1]
        assert metrics["readings"]["total"] - counted >= total  # the readings feed kept up
        stuck = [c for c in metrics["clients"]["per_client"] if c["channel"] == "readings"]
        assert len(stuck) == 1 and stuck[0]["dropped_msgs"] > 0  # only the slow one lost any
        assert stuck[0]["queued_msgs"] <= 4
        assert metrics["clients"]["dropped_msgs"] >= stuck[0]["dropped_msgs"]
    finally:
        slow.close()
    api.running.wait_for(
        "the vanished client to be forgotten",
        lambda: api.http("GET", "/api/metrics")[1]["clients"]["clients"]["readings"] == 0,
    )


def test_tls_and_pseudonymised_device_ids(broker: LocalBroker, tmp_path: Path) -> None:
    key = b"a test key of more than sixteen bytes"
    secure = start_api(
        broker,
        tmp_path,
        certfile=TLS / "cert.pem",
        keyfile=TLS / "key.pem",
        pseudonymiser=Pseudonymiser(key),
    )
    context = ssl.create_default_context(cafile=str(TLS / "cert.pem"))
    secure.running.context = context
    try:
        assert secure.server.url.startswith("https://")
        secure.running.context = ssl.create_default_context()  # does not trust the test CA
        with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
            secure.http("GET", "/api/metrics")
        secure.running.context = context
        assert secure.http("GET", "/api/metrics")[0] == 200

        async def first_readings() -> list[dict]:
            ws = await ws_connect(
                secure.server.ws_url + "/", secure.tokens["viewer"], context=context
            )
            await asyncio.get_running_loop().run_in_executor(None, _simulate, secure, 10, 1500)
            message = json.loads(await asyncio.wait_for(ws.read_message(), 60))
            ws.close()
            return message["readings"]

        workers = Namespace(secure.settings, tmp_path, prefix=secure.prefix)
        with workers.worker("tls-worker") as worker:
            readings = asyncio.run(first_readings())
            secure.running.wait_for(  # the worker has joined and read (its start is slow)
                "the worker's figures",
                lambda: workers.figures().get("tls-worker", {}).get("pipeline", {}).get("total"),
                timeout_s=120,
            )
            stored = secure.running.wait_for(
                "pseudonymised alerts",
                lambda: (r := secure.http("GET", "/api/anomalies?limit=1000")[1])["total"] and r,
            )
            assert worker.proc.poll() is None, worker.output
        alias = Pseudonymiser(key)
        real = {f"{t}-{n:04d}" for t in ("thermostat", "smart_meter", "air_quality", "env_sensor")
                for n in range(10)}  # fmt: skip
        assert readings and all(r["device_id"].startswith("dev-") for r in readings)
        assert {r["device_id"] for r in readings} <= {alias.device(d) for d in real}
        devices = secure.http("GET", "/api/devices?limit=1000")[1]["items"]
        text = json.dumps([stored, devices])
        assert not any(d in text for d in real)  # no real id anywhere, explanations included
        some = stored["items"][0]["device_id"]
        assert secure.http("GET", f"/api/anomalies?device={some}")[1]["total"] >= 1
    finally:
        secure.running.stop()


def test_the_api_keeps_its_store_in_postgresql_when_given_a_url(
    broker: LocalBroker, tmp_path: Path
) -> None:
    with throwaway_postgres() as url:
        api = start_api(broker, tmp_path, database=url)
        try:
            api.server.alerts.upsert([make_alert(1), make_alert(2, days_ago=40)])
            status, acked = api.http("POST", "/api/anomalies/a0001/ack", "analyst")
            assert status == 200 and acked["acknowledged_by"].startswith("test-analyst")
            assert api.http("PUT", "/api/retention", "admin", {"days": 20})[0] == 200
            assert api.http("GET", "/api/anomalies/a0002")[0] == 404  # older than 20 days
            assert api.http("GET", "/api/anomalies")[1]["total"] == 1
            actions = [a["action"] for a in api.http("GET", "/api/audit", "admin")[1]["items"]]
            assert actions == ["retention.update", "alert.acknowledge"]
            assert api.server.db.dialect == "postgresql"
        finally:
            api.running.stop()


def test_workbench_serve_answers_with_a_token_and_stops_on_ctrl_c(
    kafka: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, "WORKBENCH_DATA_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("WORKBENCH_DATABASE_URL", None)
    made = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "token", "create", "ops", "--role", "viewer"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    token = made.stdout.strip()
    serve = subprocess.Popen(
        [sys.executable, "-m", "workbench.cli", "serve", "--port", "0",
         "--bootstrap-servers", kafka.bootstrap, "--group", f"g-{uuid.uuid4().hex[:6]}"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        line = ""
        while "serving on" not in line:
            line = serve.stdout.readline()
            assert line, "workbench serve ended before serving"
        url = re.search(r"serving on (http://\S+)", line).group(1)
        request = urllib.request.Request(url + "/api/metrics")
        with pytest.raises(urllib.error.HTTPError, match="401"):
            urllib.request.urlopen(request, timeout=10)
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.loads(response.read())["readings"]["status"] in ("starting", "consuming")
        serve.send_signal(signal.SIGINT)
        assert serve.wait(60) == 0
        assert "stopped" in serve.stdout.read()
    finally:
        if serve.poll() is None:
            serve.kill()


SINK_SPY = """
import sys, threading
from workbench.server.feeds import LiveFeeds
handle = LiveFeeds._on_readings
async def spy(self, batch):
    print(f"batch handled on {threading.current_thread().name}", flush=True)
    return await handle(self, batch)
LiveFeeds._on_readings = spy
from workbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_workbench_serve_handles_batches_on_its_event_loop_and_stops_on_ignored_sigint(
    kafka: Settings, tmp_path: Path
) -> None:
    """The readings feed's sinks share the server's loop (the main thread): on any other thread they
    race the handlers that read the same state (it crashed `workbench serve`). Started as a
    script's background job (SIGINT ignored), Ctrl-C still stops it."""
    env = {"WORKBENCH_DATA_DIR": str(tmp_path), "WORKBENCH_DATABASE_URL": ""}
    args = ["serve", "--port", "0", "--bootstrap-servers", kafka.bootstrap]
    args += ["--group", f"g-{uuid.uuid4().hex[:6]}"]
    with RunningCommand(*args, env=env, code=SINK_SPY) as serve:
        serve.wait_for("serving on")
        producer = make_producer(kafka)
        deadline = time.monotonic() + 60
        try:
            while not any("batch handled" in line for line in serve.lines):
                assert time.monotonic() < deadline, serve.output
                producer.send("iot.readings", encode(env_reading(1, 0)), key=b"env-0001")
                producer.flush()
                time.sleep(0.5)
        finally:
            producer.close()
        threads = set(re.findall(r"batch handled on (.+)", serve.output))
        assert threads == {"MainThread"}
        code, took = serve.stop(signal.SIGINT, 60)
        assert code == 0 and took < 30, serve.output
        assert "stopped" in serve.output


METRICS_FAIL_AT_FIRST = """
import sys, time
from workbench.streams.metrics import PipelineMetrics
snapshot = PipelineMetrics.snapshot
first = []
def failing(self):
    first.append(first[0] if first else time.monotonic())
    if time.monotonic() - first[0] < 1.5:
        raise RuntimeError("deque mutated during iteration")
    return snapshot(self)
PipelineMetrics.snapshot = failing
from workbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_workbench_serve_outlives_failing_metrics_and_says_so(
    kafka: Settings, tmp_path: Path
) -> None:
    env = {"WORKBENCH_DATA_DIR": str(tmp_path), "WORKBENCH_DATABASE_URL": ""}
    args = ["serve", "--port", "0", "--bootstrap-servers", kafka.bootstrap]
    args += ["--group", f"g-{uuid.uuid4().hex[:6]}"]
    with RunningCommand(*args, env=env, code=METRICS_FAIL_AT_FIRST) as serve:
        serve.wait_for("serving on")
        serve.wait_for("the status line failed")
        after = len(serve.lines)
        serve.wait_for(r"readings: \w+ · ", after=after)  # status lines come back
        assert serve.proc.poll() is None
        code, _took = serve.stop(signal.SIGTERM, 60)
        assert code == 0, serve.output
        assert "stopped" in serve.output
