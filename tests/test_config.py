"""Settings: cluster choice, security pass-through to both clients, clear refusals."""

from __future__ import annotations

import pytest

from workbench.cli import build_parser
from workbench.config import ConfigError, Settings


def test_a_configured_cluster_replaces_the_local_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")
    settings = Settings.from_env()
    assert not settings.uses_local_broker
    assert settings.bootstrap == "kafka-1:9093,kafka-2:9093"
    assert Settings.from_env(bootstrap_servers="other:9092").bootstrap == "other:9092"


def test_local_broker_by_default_on_the_configured_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("WORKBENCH_KAFKA_PORT", "19092")
    settings = Settings.from_env()
    assert settings.uses_local_broker and settings.bootstrap == "localhost:19092"


def test_security_settings_reach_both_clients_and_child_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "analyst")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", "/etc/ssl/ca.pem")
    settings = Settings.from_env()
    assert settings.security == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "analyst",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/etc/ssl/ca.pem",
    }
    assert settings.kafka_python_security() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "analyst",
        "sasl_plain_password": "s3cret",
        "ssl_cafile": "/etc/ssl/ca.pem",
    }
    exported = settings.export_env()
    assert exported["KAFKA_SASL_USERNAME"] == "analyst"
    monkeypatch.setattr("os.environ", exported)
    child = Settings.from_env()  # e.g. a Voilà kernel started with this environment
    assert (child.bootstrap, child.backend, child.security) == (
        settings.bootstrap,
        settings.backend,
        settings.security,
    )
    assert not child.uses_local_broker  # it connects to the running broker, never starts one


def test_bad_settings_are_refused_with_what_is_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORKBENCH_KAFKA_CLIENT", "aiokafka")
    with pytest.raises(ConfigError, match="choose one of kafka-python, confluent"):
        Settings.from_env()
    monkeypatch.setenv("WORKBENCH_KAFKA_CLIENT", "confluent")
    monkeypatch.setenv("WORKBENCH_KAFKA_PORT", "ninety")
    with pytest.raises(ConfigError, match="not a whole number"):
        Settings.from_env()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "--rate", "0"], "greater than 0"),
        (["simulate", "--anomaly-rate", "1.5"], "between 0 and 1"),
        (["simulate", "--duration", "5", "--count", "9"], "not allowed with argument"),
        (["up", "--client", "kcat"], "choose from 'kafka-python', 'confluent'"),
        (["kafka", "restart"], "choose from 'start', 'stop', 'status', 'fetch'"),
    ],
)
def test_bad_command_line_options_say_what_is_wrong(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
