"""The package as a user installs it: `python -m build` makes an sdist and a wheel (built from
that sdist) that carry what the commands need; installed into a fresh virtual environment outside
the checkout, its `workbench` command runs the live workbench, serves the dashboard (rendered in
Chromium) and opens JupyterLab on copies of the example notebooks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import psutil
import pytest

from tests import processes
from tests.kafka_helpers import PORT_BASE, start_workbench_up
from workbench.bench import dashboard_page as dash
from workbench.bench.browser import chromium
from workbench.config import Settings
from workbench.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
KAFKA_PORT = PORT_BASE + 380
DASHBOARD_PORT = PORT_BASE + 390
SHIPPED = (
    "workbench/dashboards/live_dashboard.ipynb",
    "workbench/notebooks/explore_stream.ipynb",
    "workbench/notebooks/tune_detectors.ipynb",
    "workbench/notebooks/evaluate.ipynb",
    "workbench/notebooks/live_components.ipynb",
    "workbench/broker/pom.xml",
    "workbench/broker/log4j2.xml",
    "workbench/broker/server.properties",
    "workbench/profiles/default.toml",
)

pytestmark = pytest.mark.kafka


def _uv() -> str:
    return str(Path(sys.executable).with_name("uv"))


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sdist and the wheel, built from this checkout (the wheel from the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [sdist] = out.glob("iot_workbench-*.tar.gz")
    [wheel] = out.glob("iot_workbench-*.whl")
    return {"sdist": sdist, "wheel": wheel}


@pytest.fixture(scope="module")
def installed(dists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with the wheel installed by its own metadata (versions
    held to the lock); returns its bin directory."""
    venv = tmp_path_factory.mktemp("user") / "venv"
    subprocess.run([_uv(), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    lock = str(ROOT / "requirements.lock")
    subprocess.run(
        [_uv(), "pip", "install", "--quiet", "--python", python, str(dists["wheel"]), "-c", lock],
        check=True,
        timeout=900,
    )
    return venv / "bin"


@pytest.fixture
def user_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: no checkout on the path, data of their own."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env |= {"WORKBENCH_DATA_DIR": str(tmp_path / "data"), "PYTHONUNBUFFERED": "1"}
    return env


def test_sdist_and_wheel_carry_the_notebooks_and_broker_files(dists: dict[str, Path]) -> None:
    wheel = set(zipfile.ZipFile(dists["wheel"]).namelist())
    assert set(SHIPPED) <= wheel
    with tarfile.open(dists["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"dashboards/live_dashboard.ipynb", "notebooks/evaluate.ipynb"} <= names
    assert {"requirements.lock", "setup.py", "workbench/broker/server.properties"} <= names


def test_installed_command_answers_outside_the_checkout(
    installed: Path, user_env: dict[str, str], tmp_path: Path
) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [installed / "workbench", *args],
            cwd=tmp_path,
            env=user_env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = run("--version")
    assert re.fullmatch(r"workbench \d+\.\d+\.\d+\S*\n", where.stdout), where
    assert "usage: workbench" in run("--help").stdout
    status = run("kafka", "status", "--json")
    assert status.returncode == 1, status.stderr  # 1: not running (nothing started yet)
    assert json.loads(status.stdout)["running"] is False
    imported = subprocess.run(
        [installed / "python", "-c", "import workbench; print(workbench.__file__)"],
        cwd=tmp_path,
        env=user_env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "site-packages" in imported.stdout and str(ROOT) not in imported.stdout


def test_installed_workbench_up_serves_the_dashboard(
    installed: Path, user_env: dict[str, str], tmp_path: Path
) -> None:
    with start_workbench_up(
        KAFKA_PORT,
        tmp_path / "data",
        *["--devices", "20", "--rate", "100", "--dashboard-port", str(DASHBOARD_PORT)],
        workbench=(str(installed / "workbench"),),
        cwd=tmp_path,
    ) as up:
        url = up.wait_for(r"dashboard: (http://\S+)", timeout_s=180).group(1)
        with chromium() as context:
            page = dash.open_dashboard(context, url)
            page.wait_for_function(
                "() => /[1-9][\\d,]* msgs\\/s/.test(document.body.innerText)", timeout=60_000
            )
        code, _ = up.stop(signal.SIGINT, 90)
        assert code == 0, up.output
    assert processes.using(tmp_path) == []


def test_installed_lab_opens_copies_of_the_example_notebooks(
    installed: Path, user_env: dict[str, str], tmp_path: Path, kafka: Settings
) -> None:
    port = free_port()
    user_env |= {
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,  # the session broker stands in for a cluster
    }
    lab = subprocess.Popen(
        [installed / "workbench", "lab", "--no-browser", "--port", str(port)],
        cwd=tmp_path,
        env=user_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        link = next(line for line in lab.stdout if line.startswith("JupyterLab: "))
        token = re.search(r"token=(\w+)", link)[1]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/contents", headers={"Authorization": f"token {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            listed = {item["name"] for item in json.load(response)["content"]}
        assert {"explore_stream.ipynb", "tune_detectors.ipynb", "evaluate.ipynb"} <= listed
        copies = tmp_path / "data" / "notebooks"
        assert {p.name for p in copies.glob("*.ipynb")} >= listed - {".ipynb_checkpoints"}
        lab.send_signal(signal.SIGINT)
        assert lab.wait(60) == 0
    finally:
        if lab.poll() is None:
            processes.stop([psutil.Process(lab.pid)])
