"""Serve the live dashboard notebook with Voilà, one kernel (and consumer group) per viewer.

Kernels whose page is gone are reclaimed in two steps: the dashboard's watchdog stops the
pipeline when the page's heartbeat stops, then the server culls the idle kernel.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from workbench.config import Settings
from workbench.ports import port_free, port_holder
from workbench.shipped import shipped_dir

DASHBOARD_NOTEBOOK = "live_dashboard.ipynb"
"""The dashboard, in the shipped ``dashboards/`` directory."""
DEFAULT_PORT = 8866
IDENTITY_PROVIDER = "workbench.security.jupyter_auth.WorkbenchIdentityProvider"
CULL_IDLE_S = 120
"""Idle kernels (their page gone, their pipeline stopped by the watchdog) are shut down after
this long (s)."""


class DashboardError(RuntimeError):
    """The dashboard could not be served."""


def voila_command(
    notebook: Path,
    port: int,
    ip: str = "127.0.0.1",
    cull_idle_s: int = CULL_IDLE_S,
    auth: bool = True,
) -> list[str]:
    """The Voilà command line: no browser, no tracebacks for viewers, a preheated kernel, and
    (``auth``) workbench tokens required of every viewer."""
    login = [f"--Voila.identity_provider_class={IDENTITY_PROVIDER}"] if auth else []
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
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_s}",
        f"--MappingKernelManager.cull_interval={max(1, min(30, cull_idle_s // 4))}",
        *login,
    ]


def start_dashboard(
    settings: Settings,
    port: int = DEFAULT_PORT,
    ip: str = "127.0.0.1",
    notebook: Path | None = None,
    log: Path | None = None,
    timeout_s: float = 60.0,
    cull_idle_s: int = CULL_IDLE_S,
    env: dict[str, str] | None = None,
    auth: bool = True,
) -> subprocess.Popen:
    """Start Voilà on ``notebook`` with the workbench's settings in its kernels' environment.

    Returns once the server answers; its output goes to ``log`` (or is discarded). The notebook
    defaults to the shipped dashboard.
    """
    if notebook is None:
        try:
            notebook = shipped_dir("dashboards") / DASHBOARD_NOTEBOOK
        except FileNotFoundError as exc:
            raise DashboardError(str(exc)) from None
    if not notebook.exists():
        raise DashboardError(f"no dashboard notebook at {notebook}")
    _check_port_free(ip, port)
    env = {**os.environ, **settings.export_env(), **(env or {})}
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        voila_command(notebook, port, ip, cull_idle_s, auth),
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


def dashboard_url(ip: str, port: int, token: str | None = None) -> str:
    """The link to give viewers (with a token it opens without the login form)."""
    host = "localhost" if ip in ("127.0.0.1", "0.0.0.0", "::") else ip
    return f"http://{host}:{port}/" + (f"?token={token}" if token else "")


@contextlib.contextmanager
def link_token(settings: Settings, purpose: str) -> Iterator[str]:
    """A viewer token for the printed dashboard link, revoked when the server stops (audited).

    Viewer, the least role: the link opens the dashboard and could read the live API, no more.
    """
    from workbench.security.manage import create_token, revoke_token

    actor = f"{getpass.getuser()} ({purpose})"
    token, record = create_token(settings, f"dashboard link ({purpose})", "viewer", actor)
    try:
        yield token
    finally:
        revoke_token(settings, record["token_id"], actor)


def _check_port_free(ip: str, port: int) -> None:
    """Refuse a taken port up front: the readiness probe would otherwise reach whatever holds it."""
    if not port_free(port, ip):
        raise DashboardError(
            f"port {port} on {ip} is in use by {port_holder(port)}; stop it or choose another "
            "port (workbench up --dashboard-port P, workbench dashboard --port P)"
        )


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
