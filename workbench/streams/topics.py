"""Create the workbench's topics on whichever cluster is configured (idempotent)."""

from __future__ import annotations

from workbench.config import (
    TOPIC_ALERTS,
    TOPIC_DEADLETTER,
    TOPIC_READINGS,
    TOPIC_TRUTH,
    Settings,
)

DEFAULT_TOPICS: dict[str, int] = {
    TOPIC_READINGS: 6,
    TOPIC_TRUTH: 1,
    TOPIC_DEADLETTER: 1,
    TOPIC_ALERTS: 3,
}
"""Topic → partition count. Readings are keyed by device, so 6 partitions keep per-device order."""


def ensure_topics(
    settings: Settings, topics: dict[str, int] | None = None, replication: int = 1
) -> list[str]:
    """Create whichever of ``topics`` do not exist yet; returns the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic

    wanted = DEFAULT_TOPICS if topics is None else topics
    admin = KafkaAdminClient(
        bootstrap_servers=settings.bootstrap,
        client_id="workbench-admin",
        request_timeout_ms=15_000,
        **settings.kafka_python_security(),
    )
    try:
        existing = set(admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=n, replication_factor=replication)
            for name, n in wanted.items()
            if name not in existing
        ]
        if missing:
            admin.create_topics(missing, timeout_ms=15_000)
        return [t.name for t in missing]
    finally:
        admin.close()
