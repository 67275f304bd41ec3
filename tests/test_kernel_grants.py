"""A dashboard kernel acts in the role of the token its page was opened with, and no other."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from workbench.config import Settings
from workbench.security import kernel_grants
from workbench.security.kernel_grants import DASHBOARD_ENV, Grant, kernel_grant, write_grant
from workbench.ui.session import LiveSession

NOWHERE = Settings.from_env(bootstrap_servers="localhost:1")


@pytest.fixture
def dashboard_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process as a dashboard kernel with the connection file the server knows it by."""
    connection = tmp_path / "kernel-1234.json"
    connection.write_text("{}")
    monkeypatch.setenv(DASHBOARD_ENV, "1")
    import ipykernel.connect

    monkeypatch.setattr(ipykernel.connect, "get_connection_file", lambda: str(connection))
    return connection


def test_a_kernel_reads_the_grant_its_server_wrote_for_it(dashboard_kernel: Path) -> None:
    assert kernel_grant() == Grant("viewer", "dashboard page (no token yet)")  # preheated
    write_grant(dashboard_kernel, Grant("analyst", "ana (analyst, token t1)"))
    written = kernel_grants.grant_path(dashboard_kernel)
    assert stat.S_IMODE(written.stat().st_mode) == 0o600
    assert kernel_grant() == Grant("analyst", "ana (analyst, token t1)")
    kernel_grants.remove_grant(dashboard_kernel)
    assert kernel_grant().role == "viewer"


def test_a_notebooks_own_kernel_acts_for_the_machines_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(DASHBOARD_ENV, raising=False)
    grant = kernel_grant()
    assert grant.role == "admin" and grant.actor.endswith("(notebook)")


def test_a_viewers_session_refuses_to_change_settings_or_act_on_alerts(
    dashboard_kernel: Path,
) -> None:
    write_grant(dashboard_kernel, Grant("viewer", "vic (viewer, token t2)"))
    session = LiveSession(NOWHERE, truth_topic=None)
    assert not session.may("analyst") and session.may("viewer")
    with pytest.raises(PermissionError, match="settings are read-only for a viewer"):
        asyncio.run(session.apply(session.params() | {"anomaly_threshold": 0.3}))
    with pytest.raises(PermissionError, match="a viewer cannot acknowledge or clear alerts"):
        asyncio.run(session.act_on("a1", "ack"))
    assert session.version is None  # nothing was published
