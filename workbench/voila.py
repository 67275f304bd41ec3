"""Serve the live dashboard notebook with Voilà, one kernel (and consumer group) per viewer.

The server is Voilà as ``workbench.voila_server`` hardens it: workbench tokens required, each
kernel its page's token's own, pages capped per token and in total, HTTPS with a certificate.
Kernels whose page is gone are reclaimed: the dashboard's watchdog stops the pipeline when the
page's heartbeat stops, the server shuts down a kernel no page has been connected to for a minute
(``WORKBENCH_DASHBOARD_CONNECT_S``), and culls idle ones.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from workbench.config import Settings
from workbench.ports import port_free, port_holder
from workbench.security.kernel_grants import DASHBOARD_ENV
from workbench.shipped import shipped_dir

DASHBOARD_NOTEBOOK = "live_dashboard.ipynb"
"""The dashboard, in the shipped ``dashboards/`` directory."""
DEFAULT_PORT = 8866
CULL_IDLE_S = 120
"""Idle kernels (their page gone, their pipeline stopped by the watchdog) are shut down after
this long (s)."""
LIMITS = {
    "kernels_per_token": ("WORKBENCH_DASHBOARD_PAGES_PER_TOKEN", 3),
    "kernels_total": ("WORKBENCH_DASHBOARD_PAGES_MAX", 20),
    "connect_s": ("WORKBENCH_DASHBOARD_CONNECT_S", 60),
}
"""Server setting → (environment variable, default): pages one token may have open, pages served
at once, seconds a kernel may go without a connected page."""


class DashboardError(RuntimeError):
    """The dashboard could not be served."""


def _limits(env: dict[str, str]) -> dict[str, float]:
    limits = {}
    for setting, (name, default) in LIMITS.items():
        raw = env.get(name) or str(default)
        try:
            limits[setting] = float(raw)
        except ValueError:
            limits[setting] = 0.0
        if limits[setting] < 1:
            raise DashboardError(f"{name}={raw!r}: give a number of at least 1 (default {default})")
    return limits


def voila_command(
    notebook: Path,
    port: int,
    ip: str = "127.0.0.1",
    cull_idle_s: int = CULL_IDLE_S,
    tls: tuple[Path, Path] | None = None,
    limits: dict[str, float] | None = None,
) -> list[str]:
    """The dashboard server's command line: no browser, no tracebacks for viewers, a preheated
    kernel, workbench tokens required of every viewer, and the page limits."""
    certificate = (
        [f"--WorkbenchVoila.certfile={tls[0]}", f"--WorkbenchVoila.keyfile={tls[1]}"] if tls else []
    )
    return [
        sys.executable,
        "-m",
        "workbench.voila_server",
        str(notebook),
        f"--port={port}",
        "--Voila.port_retries=0",  # this port or none: the readiness probe must reach us
        f"--Voila.ip={ip}",
        "--no-browser",
        "--show_tracebacks=False",
        "--preheat_kernel=True",
        "--pool_size=1",
        "--MappingKernelManager.buffer_offline_messages=False",
        f"--MappingKernelManager.cull_idle_timeout={cull_idle_s}",
        f"--MappingKernelManager.cull_interval={max(1, min(30, cull_idle_s // 4))}",
        *(f"--WorkbenchVoila.{k}={v:g}" for k, v in (limits or {}).items()),
        *certificate,
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
    tls: tuple[Path, Path] | None = None,
) -> subprocess.Popen:
    """Start the dashboard server on ``notebook`` with the workbench's settings in its kernels'
    environment; HTTPS only with ``tls`` (certificate, key).

    Returns once the server answers; its output goes to ``log`` (created readable by its owner
    only), or is discarded. The notebook defaults to the shipped dashboard.
    """
    if notebook is None:
        try:
            notebook = shipped_dir("dashboards") / DASHBOARD_NOTEBOOK
        except FileNotFoundError as exc:
            raise DashboardError(str(exc)) from None
    if not notebook.exists():
        raise DashboardError(f"no dashboard notebook at {notebook}")
    _check_port_free(ip, port)
    env = {**os.environ, **settings.export_env(), DASHBOARD_ENV: "1", **(env or {})}
    command = voila_command(notebook, port, ip, cull_idle_s, tls, _limits(env))
    out = _private_log(log) if log else subprocess.DEVNULL
    proc = subprocess.Popen(
        command,
        env=env,
        cwd=notebook.parent,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if log:
        out.close()
    probe = f"{'https' if tls else 'http'}://{ip}:{port}/voila/static/voila.js"
    ours = None
    if tls:  # our own server, on this machine: its certificate need not be trusted here
        ours = ssl.create_default_context()
        ours.check_hostname, ours.verify_mode = False, ssl.CERT_NONE
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            hint = f"; see {log}" if log else ""
            raise DashboardError(f"Voilà exited with code {proc.returncode}{hint}")
        try:
            with urllib.request.urlopen(probe, timeout=2, context=ours):
                return proc
        except OSError:
            time.sleep(0.3)
    stop_dashboard(proc)
    raise DashboardError(f"Voilà did not answer on port {port} within {timeout_s:.0f} s")


def dashboard_url(ip: str, port: int, token: str | None = None, tls: bool = False) -> str:
    """The link to give viewers (with a token it opens without the login form)."""
    host = "localhost" if ip in ("127.0.0.1", "0.0.0.0", "::") else ip
    scheme = "https" if tls else "http"
    return f"{scheme}://{host}:{port}/" + (f"?token={token}" if token else "")


def _private_log(path: Path) -> BinaryIO:
    """``path`` opened for appending, readable and writable by its owner only (0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(descriptor, 0o600)  # an older log may have been made world-readable
    return os.fdopen(descriptor, "ab")


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
