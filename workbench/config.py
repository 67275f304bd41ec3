"""Workbench settings: where Kafka is, which client to use, where local data lives.

Every setting comes from an environment variable (so Voilà kernels, which inherit the server's
environment, see the same cluster as the command line) and can be overridden by a command-line flag.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import platformdirs

APP_NAME = "iot-workbench"
BACKENDS = ("kafka-python", "confluent")
"""Kafka client backends: kafka-python (default, pure Python) and confluent-kafka (librdkafka)."""

TOPIC_READINGS = "iot.readings"
TOPIC_TRUTH = "iot.truth"
TOPIC_DEADLETTER = "iot.deadletter"
TOPIC_ALERTS = "iot.alerts"
TOPIC_METRICS = "iot.metrics"
TOPIC_DEVICES = "iot.devices"
TOPIC_SETTINGS = "iot.settings"
TOPIC_CHANGELOG = "iot.detector-state"

DEFAULT_LOCAL_PORT = 9092

# Kafka client security settings, passed through to either client (librdkafka spelling on the left,
# kafka-python spelling on the right).
SECURITY_ENV = {
    "security.protocol": ("KAFKA_SECURITY_PROTOCOL", "security_protocol"),
    "sasl.mechanism": ("KAFKA_SASL_MECHANISM", "sasl_mechanism"),
    "sasl.username": ("KAFKA_SASL_USERNAME", "sasl_plain_username"),
    "sasl.password": ("KAFKA_SASL_PASSWORD", "sasl_plain_password"),
    "ssl.ca.location": ("KAFKA_SSL_CAFILE", "ssl_cafile"),
    "ssl.certificate.location": ("KAFKA_SSL_CERTFILE", "ssl_certfile"),
    "ssl.key.location": ("KAFKA_SSL_KEYFILE", "ssl_keyfile"),
    "ssl.key.password": ("KAFKA_SSL_KEY_PASSWORD", "ssl_password"),
}


class ConfigError(ValueError):
    """A setting has a value the workbench cannot use; the message says what is allowed."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


@dataclass(frozen=True)
class Settings:
    """Resolved workbench settings."""

    bootstrap_servers: str | None = None
    """An external cluster; None means the project's own local broker."""
    backend: str = "kafka-python"
    local_port: int = DEFAULT_LOCAL_PORT
    data_dir: Path = field(default_factory=lambda: Path(platformdirs.user_data_dir(APP_NAME)))
    cache_dir: Path = field(default_factory=lambda: Path(platformdirs.user_cache_dir(APP_NAME)))
    security: dict[str, str] = field(default_factory=dict)
    database_url: str | None = None
    """Where alerts, tokens and the audit log live: a ``postgresql://`` URL, or None for SQLite
    in the data directory."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"unknown Kafka client backend {self.backend!r}; "
                f"choose one of {', '.join(BACKENDS)}"
            )
        if not 1 <= self.local_port <= 65535 - 1:
            raise ConfigError(f"local Kafka port {self.local_port} is outside 1–65534")

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``KAFKA_*``/``WORKBENCH_*`` variables, then non-None ``overrides``."""
        env = os.environ
        values: dict[str, object] = {
            "bootstrap_servers": env.get("KAFKA_BOOTSTRAP_SERVERS") or None,
            "backend": env.get("WORKBENCH_KAFKA_CLIENT", "kafka-python"),
            "local_port": _env_int("WORKBENCH_KAFKA_PORT", DEFAULT_LOCAL_PORT),
            "security": {k: env[v[0]] for k, v in SECURITY_ENV.items() if env.get(v[0])},
            "database_url": env.get("WORKBENCH_DATABASE_URL") or None,
        }
        if env.get("WORKBENCH_DATA_DIR"):
            values["data_dir"] = Path(env["WORKBENCH_DATA_DIR"])
        if env.get("WORKBENCH_CACHE_DIR"):
            values["cache_dir"] = Path(env["WORKBENCH_CACHE_DIR"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]

    def with_(self, **changes: object) -> Settings:
        """A copy with some settings changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def uses_local_broker(self) -> bool:
        """True when the workbench runs its own broker rather than a configured cluster."""
        return self.bootstrap_servers is None

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers clients connect to."""
        return self.bootstrap_servers or f"localhost:{self.local_port}"

    @property
    def database(self) -> str:
        """The store's URL: the configured one, else ``sqlite:///DATA_DIR/workbench.db``."""
        return self.database_url or f"sqlite:///{self.data_dir / 'workbench.db'}"

    def kafka_python_security(self) -> dict[str, str]:
        """Security settings in kafka-python's keyword spelling."""
        return {SECURITY_ENV[k][1]: v for k, v in self.security.items()}

    def export_env(self) -> dict[str, str]:
        """Environment variables that make a child process (Voilà, a kernel) use these settings."""
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "WORKBENCH_KAFKA_CLIENT": self.backend,
            "WORKBENCH_DATA_DIR": str(self.data_dir),
            "WORKBENCH_CACHE_DIR": str(self.cache_dir),
        }
        if self.database_url:
            env["WORKBENCH_DATABASE_URL"] = self.database_url
        env.update({SECURITY_ENV[k][0]: v for k, v in self.security.items()})
        return env
