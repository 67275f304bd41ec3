"""The live components in a plain Jupyter kernel (as JupyterLab runs them), against real Kafka."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from tests.kafka_helpers import produce_readings
from workbench.config import Settings


def test_the_dashboard_runs_in_a_kernel_without_blocking_it(
    kafka: Settings, topics: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in kafka.export_env().items():
        monkeypatch.setenv(name, value)
    produce_readings(kafka, topics["readings"], devices=30, per_device=40)
    cells = [
        "import asyncio, json\n"
        "from workbench.ui.dashboard import Dashboard\n"
        "from workbench.ui.session import LiveSession\n"
        f"session = LiveSession(topic={topics['readings']!r}, truth_topic={topics['truth']!r},"
        " start='earliest')\n"
        "dashboard = Dashboard(session, heartbeat=False).start()\n"
        "dashboard",
        # The cell above returned at once; the pipeline runs on the kernel's loop meanwhile.
        "for _ in range(120):\n"
        "    if session.source.metrics.total >= 1200 and session.stage.aggregates.latest:\n"
        "        break\n"
        "    await asyncio.sleep(0.25)\n"
        "await dashboard.refresh_fleet()\n"
        "dashboard.trend.type_dd.value = 'env_sensor'\n"
        "dashboard.refresh_live()\n"
        "dashboard.tuning.threshold.value = 0.42  # as a slider move does\n"
        "for _ in range(100):\n"
        "    if session.params()['anomaly_threshold'] == 0.42:\n"
        "        break\n"
        "    await asyncio.sleep(0.05)\n"
        "print(json.dumps({'total': session.source.metrics.total,"
        " 'devices': dashboard.distribution.note.value,"
        " 'trend_points': len(dashboard.trend._x),"
        " 'threshold': session.params()['anomaly_threshold'],"
        " 'applied': dashboard.tuning.applied.value}))",
        "await dashboard.stop()",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(nb, timeout=90, kernel_name="python3")
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    widget_view = nb.cells[0].outputs[0]["data"]
    assert "application/vnd.jupyter.widget-view+json" in widget_view
    figures = json.loads(nb.cells[1].outputs[0]["text"])
    assert figures["total"] == 1200
    assert "30 devices seen" in figures["devices"]
    assert figures["trend_points"] > 0
    assert figures["threshold"] == 0.42
    assert "0.42" in figures["applied"]
