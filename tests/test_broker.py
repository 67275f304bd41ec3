"""The local Kafka broker: jars, start/stop/status, data surviving restarts, clear errors.

These start a real broker on port 39192 (controller 39193) in a temporary data dir, with the real
jar cache so the jars are downloaded at most once per machine.
"""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from tests import processes
from tests.kafka_helpers import PORT_BASE
from workbench.broker import KAFKA_VERSION, BrokerError, LocalBroker, fetch_jars, process
from workbench.config import Settings

PORT = PORT_BASE + 100
TOPIC = "test.broker.roundtrip"
MESSAGE = f"hello {uuid.uuid4()}".encode()


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("localhost", port), timeout=0.5):
            return True
    except OSError:
        return False


def read_all(bootstrap: str, topic: str, timeout_s: float = 15) -> list[bytes]:
    """Every value in partition 0 of ``topic``, from the beginning."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        values: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        while consumer.position(tp) < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                values.extend(r.value for r in records)
        return values
    finally:
        consumer.close()


def kill_leftovers(home: Path) -> None:
    """Last-resort cleanup: kill brokers started from ``home`` (and only those)."""
    processes.stop([p for p in processes.using(home) if "kafka.Kafka" in processes.cmdline(p)])


@pytest.fixture(scope="module")
def real_cache_dir() -> Path:
    return Settings.from_env().cache_dir


@pytest.fixture(scope="module")
def own_settings(tmp_path_factory: pytest.TempPathFactory, real_cache_dir: Path) -> Settings:
    return Settings(
        local_port=PORT, data_dir=tmp_path_factory.mktemp("broker"), cache_dir=real_cache_dir
    )


@pytest.fixture(scope="module")
def own_broker(own_settings: Settings) -> Iterator[LocalBroker]:
    b = LocalBroker(own_settings, progress=print)
    processes.adopt(str(b.config_file))  # a test restarts it; it lives as long as the module
    started = time.monotonic()
    b.start(timeout_s=60)
    print(f"start-to-ready {time.monotonic() - started:.1f}s")
    try:
        yield b
    finally:
        b.stop()
        kill_leftovers(b.home)


# ---- jars -----------------------------------------------------------------------------------


def test_fetch_jars_is_cached(real_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    settings = Settings(cache_dir=real_cache_dir)
    libs = fetch_jars(settings)  # downloads on a fresh machine, else cached
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert any(libs.glob("log4j-slf4j-impl-*.jar"))

    def no_subprocess(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"fetch_jars ran a process although the jars are cached: {args}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    started = time.monotonic()
    assert fetch_jars(settings) == libs
    assert time.monotonic() - started < 0.5


FAKE_MVN = """#!/bin/sh
# Stands in for Maven: logs its call, then fails or 'downloads' two jars.
echo "$@" >> "{calls}"
if [ -n "$FAKE_MVN_FAIL" ]; then
  echo "[ERROR] Could not resolve dependencies: $FAKE_MVN_FAIL"
  exit 1
fi
for arg in "$@"; do
  case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
done
mkdir -p "$out"
touch "$out/kafka_2.13-{version}.jar" "$out/log4j-slf4j-impl-2.25.3.jar"
"""


@pytest.fixture
def fake_mvn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake ``mvn`` first on PATH; returns the file its calls are logged to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "mvn-calls"
    mvn = bin_dir / "mvn"
    mvn.write_text(FAKE_MVN.format(calls=calls, version=KAFKA_VERSION))
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    return calls


def test_interrupted_download_is_redone(tmp_path: Path, fake_mvn: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache")
    root = settings.cache_dir / "kafka" / KAFKA_VERSION
    (root / "libs").mkdir(parents=True)  # a download that died before its marker was written
    (root / "fetch-dead").mkdir()
    messages: list[str] = []

    libs = fetch_jars(settings, progress=messages.append)

    assert libs == root / "libs"
    assert (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file()
    assert not (root / "fetch-dead").exists()
    assert f"-Dkafka.version={KAFKA_VERSION}" in fake_mvn.read_text()
    assert any("Maven Central (once)" in m for m in messages)
    fetch_jars(settings)
    assert len(fake_mvn.read_text().splitlines()) == 1  # the second call used the cache


def test_failed_download_says_why_and_caches_nothing(
    tmp_path: Path, fake_mvn: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MVN_FAIL", "no route to repo.maven.apache.org")
    settings = Settings(cache_dir=tmp_path / "cache")
    with pytest.raises(BrokerError, match=r"no route to repo\.maven\.apache\.org"):
        fetch_jars(settings, progress=lambda _: None)
    assert not (settings.cache_dir / "kafka" / KAFKA_VERSION / "complete").exists()


def test_kafka_home_needs_no_maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "libs").mkdir()
    (tmp_path / "libs" / "kafka_2.13-4.1.0.jar").touch()
    (tmp_path / "libs" / "kafka-clients-4.1.0.jar").touch()
    monkeypatch.setenv("KAFKA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    settings = Settings(cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")
    assert fetch_jars(settings) == tmp_path / "libs"
    assert LocalBroker(settings).status().version == "4.1.0"


# ---- clear errors ---------------------------------------------------------------------------


def test_missing_java_and_maven_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    settings = Settings(local_port=PORT, data_dir=tmp_path / "data", cache_dir=tmp_path / "cache")

    with pytest.raises(BrokerError) as start_error:
        LocalBroker(settings, progress=lambda _: None).start()
    message = str(start_error.value)
    assert "Java 17+" in message
    assert "apt-get install openjdk-17-jre-headless" in message
    assert "conda-forge openjdk=17" in message
    assert "\n" not in message

    with pytest.raises(BrokerError, match=r"Java 17\+ \(java\) and Apache Maven \(mvn\)"):
        fetch_jars(settings)


def test_port_taken_by_something_else(
    tmp_path: Path, real_cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_HOME", raising=False)
    other_port = 9192
    squatter = socket.socket()
    try:
        squatter.bind(("127.0.0.1", other_port))
    except OSError:
        squatter.close()
        pytest.skip(f"port {other_port} is in use on this machine")
    squatter.listen()
    try:
        settings = Settings(local_port=other_port, data_dir=tmp_path, cache_dir=real_cache_dir)
        with pytest.raises(BrokerError, match=f"port {other_port} .* already in use by process"):
            LocalBroker(settings, progress=lambda _: None).start()
    finally:
        squatter.close()
    assert not (tmp_path / "kafka" / "broker.pid").exists()


def test_stale_pid_files_are_cleaned_and_never_signalled(tmp_path: Path) -> None:
    broker = LocalBroker(Settings(local_port=PORT, data_dir=tmp_path), progress=lambda _: None)
    broker.home.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, os.getpid()):  # a dead process, and a live one that is not our broker
        broker.pid_file.write_text(f"{pid}\n")
        assert not broker.is_running()
        assert not broker.pid_file.exists()
        broker.pid_file.write_text(f"{pid}\n")
        broker.stop()  # must not signal the test process
        assert not broker.pid_file.exists()


# ---- the real broker ------------------------------------------------------------------------


def test_started_broker_serves_kafka(own_broker: LocalBroker, own_settings: Settings) -> None:
    status = own_broker.status()
    assert status.running
    assert status.pid is not None and psutil.pid_exists(status.pid)
    assert status.bootstrap == own_settings.bootstrap == f"localhost:{PORT}"
    assert status.version == KAFKA_VERSION
    assert status.data_dir == own_broker.home
    assert (own_broker.home / "data" / "meta.properties").is_file()
    assert status.log_file.is_file()
    assert "Kafka Server started" in status.log_file.read_text()

    admin = KafkaAdminClient(bootstrap_servers=own_settings.bootstrap)
    try:
        admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
        assert TOPIC in admin.list_topics()
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=own_settings.bootstrap)
    try:
        producer.send(TOPIC, MESSAGE).get(timeout=10)
    finally:
        producer.close()
    assert read_all(own_settings.bootstrap, TOPIC) == [MESSAGE]


def test_start_when_running_is_a_noop(own_broker: LocalBroker) -> None:
    pid = own_broker.status().pid
    messages: list[str] = []
    started = time.monotonic()
    LocalBroker(own_broker.settings, progress=messages.append).start()
    assert time.monotonic() - started < 1
    assert own_broker.status().pid == pid
    assert any("already running" in m for m in messages)


def test_stop_then_start_keeps_data(own_broker: LocalBroker, own_settings: Settings) -> None:
    pid = own_broker.status().pid
    started = time.monotonic()
    own_broker.stop()
    print(f"stop {time.monotonic() - started:.1f}s")
    status = own_broker.status()
    assert not status.running and status.pid is None
    assert not own_broker.pid_file.exists()
    assert pid is not None and not psutil.pid_exists(pid)
    assert not port_open(PORT)
    assert not port_open(PORT + 1)

    messages: list[str] = []
    LocalBroker(own_settings, progress=messages.append).stop()
    assert any("no Kafka broker running" in m for m in messages)

    messages.clear()
    LocalBroker(own_settings, progress=messages.append).start()
    assert own_broker.is_running()
    assert not any("formatting" in m for m in messages)  # the storage was not formatted again
    assert read_all(own_settings.bootstrap, TOPIC) == [MESSAGE]


def test_heap_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(process.HEAP_ENV, "512m")
    assert process._heap_args() == ["-Xms256m", "-Xmx512m"]
    monkeypatch.setenv(process.HEAP_ENV, "128M")
    assert process._heap_args() == ["-Xms128M", "-Xmx128M"]
    monkeypatch.setenv(process.HEAP_ENV, "lots")
    with pytest.raises(BrokerError, match="WORKBENCH_KAFKA_HEAP"):
        process._heap_args()
