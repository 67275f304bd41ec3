"""``workbench lab``: JupyterLab on the notebooks, its kernels on the workbench's Kafka cluster.

The local broker is started unless a cluster is configured, the topics are made sure of, and the
settings are exported into JupyterLab's environment, which its kernels inherit. JupyterLab runs in
its own session, so Ctrl-C reaches only this command, which then stops JupyterLab (and with it the
kernels) and the broker if it started it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from workbench.broker import local_broker_for
from workbench.config import Settings
from workbench.ports import port_open
from workbench.shipped import copy_missing, in_checkout, shipped_dir
from workbench.streams.topics import ensure_topics
from workbench.voila import stop_dashboard

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def lab_command(notebooks: Path, port: int, open_browser: bool) -> list[str]:
    """The JupyterLab command line: loopback only, rooted at ``notebooks``."""
    as_root = ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []  # containers
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={notebooks}",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        f"--ServerApp.open_browser={open_browser}",
        "--log-level=WARN",
        *as_root,
    ]


def _server_info(proc: subprocess.Popen, timeout_s: float) -> dict:
    """JupyterLab's runtime file (url, token, port), once the server also accepts connections on
    that port: the link printed is one that answers (a suite run once got 'connection refused'
    right after the file was read)."""
    from jupyter_core.paths import jupyter_runtime_dir

    info_file = Path(jupyter_runtime_dir()) / f"jpserver-{proc.pid}.json"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {proc.returncode}; see its log above")
        try:
            info = json.loads(info_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            info = None
        if info is not None and port_open(int(info["port"]), "127.0.0.1"):
            return info
        time.sleep(0.2)
    raise TimeoutError(f"JupyterLab did not start listening in {timeout_s:.0f} s")


def example_notebooks(settings: Settings, progress: Callable[[str], None] = _say) -> Path:
    """The directory of example notebooks to open: the checkout's, or the user's copies."""
    try:
        shipped = shipped_dir("notebooks")
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    if in_checkout(shipped):
        return shipped
    user_copies = settings.data_dir / "notebooks"
    copy_missing(shipped, user_copies, progress)
    return user_copies


def run_lab(
    settings: Settings,
    port: int = 8888,
    open_browser: bool = True,
    notebooks: Path | None = None,
    progress: Callable[[str], None] = _say,
) -> int:
    """Run JupyterLab until Ctrl-C (``KeyboardInterrupt``; the command line makes SIGTERM one
    too); the link goes to stdout. Returns an exit code.

    ``notebooks`` defaults to the example notebooks: a checkout's own, or, for an installed
    package, copies in ``settings.data_dir / "notebooks"`` (made the first time, never
    overwritten), so nothing is ever edited inside site-packages.
    """
    notebooks = notebooks or example_notebooks(settings, progress)
    if not notebooks.is_dir():
        raise ValueError(f"no notebooks directory at {notebooks}")
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is outside 0–65535 (0 picks any free port)")
    with local_broker_for(settings, progress):
        created = ensure_topics(settings)
        if created:
            progress(f"created topics {', '.join(created)}")
        proc = subprocess.Popen(
            lab_command(notebooks, port, open_browser),
            env=os.environ | settings.export_env(),
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            info = _server_info(proc, START_TIMEOUT_S)
            print(f"JupyterLab: {info['url']}lab?token={info['token']}", flush=True)
            progress(
                f"notebooks in {notebooks}; kernels use Kafka at {settings.bootstrap} "
                f"({settings.backend}); Ctrl-C stops JupyterLab"
                + (" and the local broker if it started it" if settings.uses_local_broker else "")
            )
            return proc.wait()
        except KeyboardInterrupt:
            return 0
        except (RuntimeError, TimeoutError) as exc:
            progress(f"workbench lab: {exc}")
            return 1
        finally:
            if proc.poll() is None:
                progress("stopping JupyterLab and its kernels…")
                stop_dashboard(proc, STOP_TIMEOUT_S)  # stops any Jupyter server the same way
