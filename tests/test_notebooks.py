"""The exploration notebooks run top to bottom headlessly on the real local Kafka, fed by the
simulator on each test's own topics; ``workbench lab`` serves them on loopback and stops cleanly."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient
from nbformat import NotebookNode
from nbformat.v4 import new_code_cell

from tests import processes
from tests.html_tables import html_tables
from tests.kafka_helpers import PORT_BASE, produce_readings
from tests.test_nab import write_corpus
from tests.worker_helpers import Namespace
from workbench.cli import build_parser
from workbench.config import Settings
from workbench.evaluation.simulator_eval import read_all
from workbench.explore.recent import decode_readings, read_recent
from workbench.ports import free_port
from workbench.simulator import run_simulator
from workbench.streams.topics import ensure_topics

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
pytestmark = pytest.mark.kafka


def tables(cell: NotebookNode) -> list[list[list[str]]]:
    """The tables a cell displayed, as the user sees them."""
    return html_tables(*(out.get("data", {}).get("text/html", "") for out in cell.outputs))


def text(cell: NotebookNode) -> str:
    """What a cell printed to stdout."""
    return "".join(o.text for o in cell.outputs if o.output_type == "stream" and o.name == "stdout")


WIDGET = "application/vnd.jupyter.widget-view+json"


def shows_widget(cell: NotebookNode) -> bool:
    """Whether the cell displayed a widget (a chart, a live table)."""
    return any(WIDGET in o.get("data", {}) for o in cell.outputs)


def with_parameters(name: str, **values: object) -> NotebookNode:
    """The notebook with an injected cell overriding its parameters (each must exist there)."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    declared = set(re.findall(r"^([A-Z][A-Z0-9_]*) =", nb.cells[at].source, re.MULTILINE))
    assert set(values) <= declared, f"not parameters of {name}: {set(values) - declared}"
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    nb.cells.insert(at + 1, new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    return nb


def tagged(nb: NotebookNode, tag: str) -> int:
    return next(i for i, c in enumerate(nb.cells) if tag in c.metadata.get("tags", []))


def execute(
    nb: NotebookNode,
    settings: Settings,
    after: dict[int, Callable[[], None]] | None = None,
    timeout_s: int = 180,
) -> NotebookNode:
    """Run every cell in one kernel on ``settings``' cluster; ``after[i]()`` runs after cell i.

    A cell that raises fails the test (nbclient's CellExecutionError), as does a traceback on
    stderr (a callback or thread that failed after its cell returned).
    """
    client = NotebookClient(
        nb, timeout=timeout_s, kernel_name="python3", resources={"metadata": {"path": NOTEBOOKS}}
    )
    with client.setup_kernel(env=os.environ | settings.export_env()):
        for i, cell in enumerate(nb.cells):
            client.execute_cell(cell, i)
            if after and i in after:
                after[i]()
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", out
            if out.output_type == "stream" and out.name == "stderr":
                assert "Traceback" not in out.text, out.text
    return nb


def simulate_into(settings: Settings, topics: dict[str, str], **options: object) -> set[str]:
    """Publish a short simulated fleet history; the device ids on the topic."""
    stats = run_simulator(
        settings,
        readings_topic=topics["readings"],
        truth_topic=topics["truth"],
        **options,
    )
    assert stats.sent and not stats.undelivered
    return {json.loads(v)["device_id"] for v in read_all(settings, topics["readings"], idle_s=1)}


@contextlib.contextmanager
def live_fleet(settings: Settings, topic: str) -> Iterator[Callable[[], None]]:
    """Three devices (env-0000…2) that, once the yielded function is called, send a reading each
    every 0.2 s until the block ends: a fleet that keeps sending while a notebook runs."""
    sending = threading.Event()

    def keep_sending() -> None:
        while sending.is_set():
            produce_readings(settings, topic, devices=3, per_device=1)
            time.sleep(0.2)

    feeder = threading.Thread(target=keep_sending)

    def start() -> None:
        sending.set()
        feeder.start()

    try:
        yield start
    finally:
        sending.clear()
        if feeder.is_alive():
            feeder.join()


LIVE_DEVICES = ["env-0000", "env-0001", "env-0002"]


def test_explore_stream_peeks_shows_the_schema_follows_live_and_charts_a_device(
    kafka: Settings, topics: dict[str, str]
) -> None:
    produced = simulate_into(kafka, topics, devices=12, rate=20, count=600, backfill_s=30, seed=7)
    nb = with_parameters(
        "explore_stream.ipynb",
        READINGS_TOPIC=topics["readings"],
        PEEK_RECORDS=10,
        LIVE_REFRESH_S=0.2,
        LIVE_RUN_FOR_S=120.0,
        LIVE_WAIT_S=60.0,
        DEVICE_RECORDS=600,
    )
    live = tagged(nb, "live-table")
    # Run All, while three devices keep sending from the moment the live table started; then
    # a cell of the test's waits (on the kernel's loop, as a user would) until the table shows
    # them.
    nb.cells.append(
        new_code_cell(
            "import asyncio\n"
            "for _ in range(300):\n"
            "    if all(f'env-000{d}' in live.table.value for d in range(3)):\n"
            "        break\n"
            "    await asyncio.sleep(0.1)\n"
            "print(sorted(live.latest))\n"
            "live.stop()"
        ),
    )
    with live_fleet(kafka, topics["readings"]) as start_sending:
        execute(nb, kafka, after={live: start_sending})
    cells = nb.cells

    peek = next(c for c in cells if "PEEK_RECORDS)" in c.source and "display" in c.source)
    assert "latest 10 records: 10 valid readings, 0 rejected" in text(peek)
    [table] = tables(peek)
    header, rows = table[0], table[1:]
    assert "temperature (°C)" in header and "ts (UTC)" in header and "lat (°)" in header
    assert len(rows) == 10 and {r[header.index("device_id")] for r in rows} <= produced

    schema = next(c for c in cells if "schema_table()" in c.source)
    schema_rows = tables(schema)[0][1:]
    assert ["air_quality", "pm25", "µg/m³", "0 … 2,000", "gauge"] in [r[:5] for r in schema_rows]
    assert ["thermostat", "energy", "kWh", "0 … 1e+09", "counter"] in [r[:5] for r in schema_rows]
    assert {r[0] for r in schema_rows} == {"thermostat", "smart_meter", "air_quality", "env_sensor"}
    assert shows_widget(cells[live])

    drill = next(c for c in cells if "line_chart(" in c.source)
    match = re.search(r"^(\S+) \((\w+)\): (\d+) readings over", text(drill), re.MULTILINE)
    assert match and match[1] in produced | set(LIVE_DEVICES), text(drill)
    assert int(match[3]) >= 2 and shows_widget(drill)

    # What Run All ends with: the live table has heard the devices that send.
    summary = text(cells[tagged(nb, "live-summary")])
    heard = re.search(r"live table: ([\d,]+) readings seen so far, (\d+) devices shown", summary)
    assert heard and int(heard[1].replace(",", "")) > 0 and 1 <= int(heard[2]) <= 3, summary
    assert "it keeps updating for 120 s from its start" in summary
    assert text(cells[-1]).strip() == str(LIVE_DEVICES), "live table stuck"


def column(table: list[list[str]], name: str) -> list[str]:
    """One column of a displayed table, header excluded."""
    at = table[0].index(name)
    return [row[at] for row in table[1:]]


def test_tune_detectors_replays_settings_and_a_higher_threshold_raises_fewer_alerts(
    kafka: Settings, topics: dict[str, str]
) -> None:
    simulate_into(
        kafka, topics, devices=100, rate=100, count=12_000, backfill_s=120, anomaly_rate=0.2, seed=5
    )
    nb = with_parameters(
        "tune_detectors.ipynb",
        READINGS_TOPIC=topics["readings"],
        TRUTH_TOPIC=topics["truth"],
        THRESHOLDS=[0.05, 0.2, 0.6],
        LIVE_WAIT_S=60.0,
    )
    with live_fleet(kafka, topics["readings"]) as start_sending:  # once the live detector runs
        cells = execute(nb, kafka, after={tagged(nb, "live-detector"): start_sending}).cells

    recorded = next(c for c in cells if "decode_truth(r.value)" in c.source)
    match = re.search(
        r"recorded 12,000 readings from 100 devices: .* (\d+) injected", text(recorded)
    )
    assert match and int(match[1]) > 0, text(recorded)

    compared = next(c for c in cells if "comparison_table(results" in c.source)
    [table] = tables(compared)
    assert column(table, "settings") == ["as running", "EWMA on", "no fleet models", "short window"]
    assert column(table, "changed")[:2] == ["as running", "use_ewma=True"]
    assert all(0 <= float(p) <= 1 for p in column(table, "precision"))

    swept = next(c for c in cells if "comparison_table(sweep" in c.source)
    [table] = tables(swept)
    alerts = [int(a) for a in column(table, "alerts")]
    per_minute = [float(a) for a in column(table, "alerts/min")]
    recall = [float(r) for r in column(table, "recall")]
    assert alerts[0] > alerts[1] >= alerts[2] > 0, table
    assert per_minute[0] > per_minute[2] and recall[0] >= recall[2], table
    assert shows_widget(swept)

    chosen = next(c for c in cells if "chosen = " in c.source)
    assert re.match(r"chosen: anomaly_threshold=0\.(05|2|6) \(best F1 ", text(chosen)), text(chosen)
    live = cells[tagged(nb, "live-detector")]
    assert "live detector now: anomaly_threshold=" in text(live)
    assert "refused, settings unchanged: anomaly_threshold=1.5 is out of range" in text(live)
    scored = re.search(r"live pipeline stopped: ([\d,]+) readings scored", text(cells[-1]))
    assert scored and int(scored[1].replace(",", "")) > 0, text(cells[-1])  # Run All scores some


def test_evaluate_scores_the_simulator_per_kind_and_nab_per_profile(
    kafka: Settings, tmp_path: Path
) -> None:
    nb = with_parameters(
        "evaluate.ipynb",
        SIM_DEVICES=50,
        SIM_RATE=50.0,
        SIM_DURATION_S=240.0,
        SIM_SEED=2,
        SIM_ANOMALY_RATE=0.3,
        NAB_DIR=str(write_corpus(tmp_path)),
        NAB_OUT=str(tmp_path / "scores"),
    )
    cells = execute(nb, kafka).cells

    simulator = cells[tagged(nb, "simulator")]
    printed = text(simulator)
    header, _, *rows = printed.splitlines()
    assert header.split() == ["kind", "truths", "found", "alerts", "precision", "recall", "F1"]
    by_kind = {r.split()[0]: r.split()[1:] for r in rows if not r.startswith("detection delay")}
    assert "overall" in by_kind and len(by_kind) >= 3, printed
    assert int(by_kind["overall"][0]) > 0 and all(
        0 <= float(v) <= 1 for v in by_kind["overall"][3:]
    )
    assert re.search(r"detection delay: median [\d.]+ s, p95 [\d.]+ s", printed), printed
    assert shows_widget(cells[tagged(nb, "simulator") + 1])

    nab = cells[tagged(nb, "nab")]
    assert re.search(r"^standard\s+-?[\d.]+\s", text(nab), re.MULTILINE), text(nab)
    assert (tmp_path / "scores" / "cat_a" / "one.csv").is_file()
    assert shows_widget(cells[tagged(nb, "nab") + 1])


def test_evaluate_says_how_to_get_nab_when_its_directory_is_missing(
    kafka: Settings, tmp_path: Path
) -> None:
    nb = with_parameters("evaluate.ipynb", NAB_DIR=str(tmp_path / "no-nab"))
    nb.cells = [c for c in nb.cells if "simulator" not in c.metadata.get("tags", [])]
    cells = execute(nb, kafka).cells
    assert f"NAB part skipped: no directory '{tmp_path / 'no-nab'}'" in text(
        cells[tagged(nb, "nab")]
    )
    assert "WORKBENCH_NAB_DIR" in text(cells[tagged(nb, "nab")])
    assert not cells[tagged(nb, "nab") + 1].outputs


@pytest.mark.parametrize("cluster", ["configured", "local"])
def test_lab_serves_the_notebooks_on_loopback_with_the_cluster_and_stops_on_ctrl_c(
    cluster: str, kafka: Settings, tmp_path: Path
) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    env = os.environ | {
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "WORKBENCH_DATA_DIR": str(data_dir),
    }
    if cluster == "configured":  # the session broker stands in for a cluster: nothing local starts
        env["KAFKA_BOOTSTRAP_SERVERS"] = bootstrap = kafka.bootstrap
    else:  # no cluster: the command starts the local broker on its configured port
        env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
        env["WORKBENCH_KAFKA_PORT"] = str(PORT_BASE + 200)
        bootstrap = f"localhost:{PORT_BASE + 200}"
    with (tmp_path / "lab.log").open("w") as log:
        lab = subprocess.Popen(
            [sys.executable, "-m", "workbench.cli", "lab", "--no-browser", "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        lines: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for line in lab.stdout:
                lines.put(line)
            lines.put("")  # it exited

        threading.Thread(target=read, daemon=True).start()
        link = lines.get(timeout=180)
        match = re.fullmatch(rf"JupyterLab: http://127\.0\.0\.1:{port}/lab\?token=(\w+)\n", link)
        assert match, (tmp_path / "lab.log").read_text()
        auth = {"Authorization": f"token {match[1]}"}
        base = f"http://127.0.0.1:{port}/api"

        def call(path: str, method: str = "GET") -> object:
            request = urllib.request.Request(base + path, method=method, headers=auth)
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)

        listed = {item["name"] for item in call("/contents")["content"]}
        assert {"explore_stream.ipynb", "tune_detectors.ipynb", "evaluate.ipynb"} <= listed

        [server] = [
            p for p in processes.descendants(lab.pid) if "jupyterlab" in processes.cmdline(p)
        ]
        listening = [c for c in server.net_connections("inet") if c.status == psutil.CONN_LISTEN]
        assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}

        kernel_id = call("/kernels", "POST")["id"]
        kernels = [
            p
            for p in processes.descendants(server.pid)
            if kernel_id in " ".join(processes.cmdline(p))
        ]
        assert len(kernels) == 1
        kernel_env = kernels[0].environ()
        assert kernel_env["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap
        assert kernel_env["WORKBENCH_DATA_DIR"] == str(data_dir)
        assert bool(processes.using(data_dir)) == (cluster == "local")  # the broker it started

        lab.send_signal(signal.SIGINT)
        assert lab.wait(60) == 0
        assert processes.gone(server.pid) and processes.gone(kernels[0].pid)
        assert processes.using(data_dir) == []
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
    log_text = (tmp_path / "lab.log").read_text()
    assert "stopping JupyterLab and its kernels" in log_text, log_text


def test_recent_reads_are_bounded_by_count_and_time_and_name_a_missing_topic(
    kafka: Settings, topics: dict[str, str]
) -> None:
    produce_readings(kafka, topics["readings"], devices=5, per_device=1)
    time.sleep(0.05)
    mark = datetime.now(UTC)
    later = produce_readings(kafka, topics["readings"], devices=5, per_device=2)
    since, _ = decode_readings(read_recent(kafka, topics["readings"], 100, since=mark))
    assert {(r.device_id, r.seq) for r in since} == later and len(since) == 10
    latest = read_recent(kafka, topics["readings"], 3)
    assert len(latest) == 3 and latest == sorted(latest, key=lambda r: r.timestamp_ms)
    assert min(r.timestamp_ms for r in latest) >= mark.timestamp() * 1000
    with pytest.raises(ValueError, match="there is no topic 'nowhere' on localhost"):
        read_recent(kafka, "nowhere", 10)


@pytest.mark.parametrize(
    ("port", "message"),
    [("70000", "give a number 1–65535"), ("http", "'http' is not a TCP port")],
)
def test_lab_refuses_a_bad_port_saying_what_is_allowed(
    port: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["lab", "--port", port])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_live_components_run_in_a_kernel_and_follow_the_stream(
    kafka: Settings, tmp_path: Path
) -> None:
    ns = Namespace(kafka, tmp_path)
    fleet = {"readings": ns.topics.readings, "truth": f"{ns.prefix}iot.truth"}
    ensure_topics(kafka, {fleet["truth"]: 1})
    with ns.worker("notebook-worker") as worker:
        simulate_into(kafka, fleet, devices=40, rate=400.0, count=2_000, seed=4, backfill_s=60)
        nb = with_parameters(
            "live_components.ipynb",
            TOPIC_PREFIX=ns.prefix,
            TRUTH_TOPIC=fleet["truth"],
            WAIT_FOR_READINGS=2_000,
        )
        execute(nb, kafka)
        assert worker.proc.poll() is None, worker.output
    shown = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and shows_widget(c)]
    assert len(shown) == 3  # the whole dashboard, then the trend and tuning panels alone
    out = "\n".join(text(c) for c in nb.cells if c.cell_type == "code")
    assert "the workers handled 2,000 readings" in out
    assert "every worker applies settings v1: threshold 0.30" in out
    assert re.search(r"threshold 0\.05 would have raised \d+ alerts in [\d.]+ min", out)
