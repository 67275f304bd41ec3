"""Create the workbench's topics on whichever cluster is configured (idempotent)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from workbench.config import (
    TOPIC_ALERTS,
    TOPIC_CHANGELOG,
    TOPIC_DEADLETTER,
    TOPIC_DEVICES,
    TOPIC_METRICS,
    TOPIC_READINGS,
    TOPIC_SETTINGS,
    TOPIC_TRUTH,
    Settings,
)

READING_PARTITIONS = 6
DEFAULT_TOPICS: dict[str, int] = {
    TOPIC_READINGS: READING_PARTITIONS,
    TOPIC_TRUTH: 1,
    TOPIC_DEADLETTER: 1,
    TOPIC_ALERTS: 3,
    TOPIC_METRICS: 1,
    TOPIC_DEVICES: 3,
    TOPIC_SETTINGS: 1,
}
"""Topic → partition count. Readings are keyed by device, so 6 partitions keep per-device order.
Each worker group's detector-state changelog (``TOPIC_CHANGELOG.<group>``, made by its workers)
is co-partitioned with them: a device's state lives in the partition number of its readings."""
_COMPACTED = {
    "cleanup.policy": "compact",
    # Compact soon after writing (a takeover reads the whole log): roll a segment every minute.
    "segment.ms": "60000",
    "min.cleanable.dirty.ratio": "0.1",
    "delete.retention.ms": "60000",
}
TOPIC_CONFIGS: dict[str, dict[str, str]] = {
    TOPIC_ALERTS: {"cleanup.policy": "compact"},
    TOPIC_DEVICES: _COMPACTED,
    TOPIC_SETTINGS: {"cleanup.policy": "compact"},
    TOPIC_CHANGELOG: _COMPACTED,
    TOPIC_METRICS: {"retention.ms": str(24 * 3600 * 1000)},
}
"""Per-topic configuration: alert states by alert id, devices and settings are compacted (the
latest record per key is what counts); pipeline figures are kept a day."""
RETRY_S = 2.0
"""How long each attempt waits for an unreachable broker to answer."""


def ensure_topics(
    settings: Settings,
    topics: dict[str, int] | None = None,
    replication: int = 1,
    connect_timeout_s: float = 30.0,
    configs: dict[str, dict[str, str]] | None = None,
) -> list[str]:
    """Create whichever of ``topics`` do not exist yet (with ``configs``, default
    ``TOPIC_CONFIGS``, by name); returns the names created.

    Raises kafka-python's ``KafkaTimeoutError`` when no broker answers within ``connect_timeout_s``.
    """
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = DEFAULT_TOPICS if topics is None else topics
    configs = TOPIC_CONFIGS if configs is None else configs
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap,
        client_id="workbench-admin",
        request_timeout_ms=15_000,
        bootstrap_timeout_ms=int(connect_timeout_s * 1000),
        **settings.kafka_python_security(),
    )
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(
                name,
                num_partitions=n,
                replication_factor=replication,
                topic_configs=configs.get(name, {}),
            )
            for name, n in wanted.items()
            if name not in existing
        ]
        if not missing:
            return []
        try:
            admin.create_topics(missing, timeout_ms=15_000)
        except TopicAlreadyExistsError:  # another process (a worker starting beside us) won
            created = set(admin.list_topics())
            missing = [t for t in missing if t.name in created]
        _wait_until_served(admin, [t.name for t in missing])
        return [t.name for t in missing]
    finally:
        admin.close()


def ensure_topics_when_reachable(
    settings: Settings,
    stop: threading.Event,
    progress: Callable[[str], None],
    topics: dict[str, int] | None = None,
) -> list[str] | None:
    """``ensure_topics``, tried again every ``RETRY_S`` while no broker answers (saying so each
    time) until one does or ``stop`` is set; None when stopped first."""
    from kafka.errors import KafkaTimeoutError

    while not stop.is_set():
        try:
            return ensure_topics(settings, topics, connect_timeout_s=RETRY_S)
        except KafkaTimeoutError:
            progress(
                f"broker unreachable at {settings.bootstrap}: trying again every {RETRY_S:.0f} s "
                "(Ctrl-C stops)"
            )
            stop.wait(0.5)
    return None


def _wait_until_served(admin: object, names: list[str], timeout_s: float = 15.0) -> None:
    """Wait until every partition of the new topics has a leader in the broker's metadata.

    A consumer that subscribes before then is assigned nothing and, with kafka-python, looks again
    only when its metadata expires (minutes later).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        described = admin.describe_topics(names)  # type: ignore[attr-defined]
        ready = len(described) == len(names) and all(
            t.get("error_code", 0) == 0
            and t["partitions"]
            and all(p["leader_id"] >= 0 for p in t["partitions"])
            for t in described
        )
        if ready:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics {', '.join(names)} had no leaders after {timeout_s:.0f} s")
        time.sleep(0.1)
