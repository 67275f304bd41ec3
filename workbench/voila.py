"""Serve the live dashboard notebook with Voilà, one kernel (and consumer group) per viewer.

Kernels whose page is gone are reclaimed in two steps: the dashboard's watchdog stops the
pipeline when the page's heartbeat stops, then the server culls the idle kernel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from workbench.config import Settings

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "live_dashboard.ipynb"
DEFAULT_PORT = 8866
CULL_IDLE_S = 120


class DashboardError(RuntimeError):
    """The dashboard could not be served."""


def voila_command(notebook: Path, port: int, ip: str = "127.0.0.1") -> list[str]:
    """The Voilà command line: no browser, no tracebacks for viewers, a preheated kernel."""
    return [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--port={port}",
        f"--Voila.ip={ip}",
        "--no-browser",
        "--show_tracebacks=False",
        "--preheat_kernel=True",
        "--pool_size=1",
        "--MappingKernelManager.buffer_offline_messages=False",
        f"--MappingKernelManager.cull_idle_timeout={CULL_IDLE_S}",
        "--MappingKernelManager.cull_interval=30",
    ]


def start_dashboard(
    settings: Settings,
    port: int = DEFAULT_PORT,
    ip: str = "127.0.0.1",
    notebook: Path = DASHBOARD,
    log: Path | None = None,
    timeout_s: float = 60.0,
) -> subprocess.Popen:
    """Start Voilà on ``notebook`` with the workbench's settings in its kernels' environment.

    Returns once the server answers; its output goes to ``log`` (or is discarded).
    """
    if not notebook.exists():
        raise DashboardError(f"no dashboard notebook at {notebook} (run from a checkout)")
    env = {**os.environ, **settings.export_env()}
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        voila_command(notebook, port, ip),
        env=env,
        cwd=notebook.parent,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if log:
        out.close()
    probe = f"http://{ip}:{port}/voila/static/voila.js"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            hint = f"; see {log}" if log else ""
            raise DashboardError(f"Voilà exited with code {proc.returncode}{hint}")
        try:
            with urllib.request.urlopen(probe, timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    stop_dashboard(proc)
    raise DashboardError(f"Voilà did not answer on port {port} within {timeout_s:.0f} s")


def dashboard_url(ip: str, port: int) -> str:
    """The link to give viewers."""
    host = "localhost" if ip in ("127.0.0.1", "0.0.0.0", "::") else ip
    return f"http://{host}:{port}/"


def stop_dashboard(proc: subprocess.Popen, timeout_s: float = 15.0) -> None:
    """Stop Voilà and its kernels (SIGTERM to the process group, then SIGKILL)."""
    import signal

    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
    except ProcessLookupError:
        pass
