"""Shared fixtures: one real local Kafka broker for the whole test session.

The broker runs on its own ports and data directory so it never touches a workbench the user has
running; its jars come from the user's normal cache (fetched once with Maven).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

pytest.register_assert_rewrite("tests.processes")  # a plugin (below) imported here first

from tests import processes  # noqa: E402
from tests.kafka_helpers import PORT_BASE  # noqa: E402
from workbench.broker import LocalBroker  # noqa: E402
from workbench.config import Settings  # noqa: E402
from workbench.streams.topics import ensure_topics  # noqa: E402

pytest_plugins = ["tests.processes", "pytester"]

TEST_PORT = PORT_BASE


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """The session's broker (tests may stop and restart it)."""
    settings = Settings.from_env(
        local_port=TEST_PORT, data_dir=tmp_path_factory.mktemp("workbench-data")
    ).with_(bootstrap_servers=None)
    local = LocalBroker(settings, progress=lambda _m: None)
    processes.adopt(str(local.config_file))  # tests may restart it; it lives for the session
    local.start()
    yield local
    local.stop()


@pytest.fixture
def kafka(broker: LocalBroker) -> Settings:
    """Settings pointing at the running session broker (restarted if a test left it down)."""
    if not broker.is_running():
        broker.start()
    return broker.settings


@pytest.fixture
def topics(kafka: Settings, request: pytest.FixtureRequest) -> dict[str, str]:
    """Fresh, uniquely named readings/dead-letter/truth topics for one test."""
    tag = f"{request.node.name[:40]}.{uuid.uuid4().hex[:6]}".replace("[", ".").replace("]", "")
    names = {
        "readings": f"t.{tag}.readings",
        "deadletter": f"t.{tag}.deadletter",
        "truth": f"t.{tag}.truth",
    }
    ensure_topics(kafka, {names["readings"]: 6, names["deadletter"]: 1, names["truth"]: 1})
    return names
