"""A viewer's kernel goes away after its page closes: watchdog stops the pipeline, Voilà culls."""

from __future__ import annotations

import socket

import psutil
import pytest

from tests import processes
from tests.waiting import eventually
from workbench.bench import dashboard_page as dash
from workbench.bench.browser import chromium
from workbench.config import Settings
from workbench.ports import free_port
from workbench.security.manage import create_token
from workbench.voila import DashboardError, start_dashboard, stop_dashboard


def _kernels(server: psutil.Process) -> list[psutil.Process]:
    return [
        p
        for p in processes.descendants(server.pid)
        if any("ipykernel" in part for part in processes.cmdline(p))
    ]


def test_a_closed_page_frees_its_kernel(kafka: Settings, tmp_path) -> None:
    port = free_port()
    proc = start_dashboard(
        kafka,
        port=port,
        log=tmp_path / "voila.log",
        cull_idle_s=4,
        env={"WORKBENCH_WATCHDOG_S": "2"},
    )
    try:
        server = psutil.Process(proc.pid)
        assert eventually(lambda: len(_kernels(server)) == 1, 60)  # the preheated one
        preheated = {k.pid for k in _kernels(server)}
        token, _ = create_token(kafka, "culling test", "viewer", "test")
        with chromium() as context:
            page = dash.open_dashboard(context, f"http://127.0.0.1:{port}/?token={token}")
            assert eventually(lambda: len(_kernels(server)) == 2, 60)  # viewer's + new preheated
            # The page's heartbeat reached the kernel: its pipeline started, the watchdog is armed.
            page.wait_for_function(
                "() => !document.body.innerText.includes('waiting for a viewer')", timeout=30_000
            )
            both = {k.pid for k in _kernels(server)}
            page.close()
        # Watchdog (2 s without heartbeats) stops the pipeline, then the idle kernel is culled.
        assert eventually(lambda: len(_kernels(server)) == 1, 60), (
            tmp_path / "voila.log"
        ).read_text()
        # The viewer had the preheated kernel; the one left is the pool's new one.
        assert {k.pid for k in _kernels(server)} == both - preheated
    finally:
        stop_dashboard(proc)
    assert processes.gone(proc.pid)


def test_a_taken_port_is_refused_before_voila_starts(kafka: Settings, tmp_path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(DashboardError, match=f"port {port} on 127.0.0.1 is in use"):
            start_dashboard(kafka, port=port, log=tmp_path / "voila.log")
    assert not (tmp_path / "voila.log").exists()  # nothing was started
