"""The local broker's process: one KRaft node (broker and controller), started, probed, stopped.

Everything the broker writes lives under ``settings.data_dir / "kafka"``::

    server.properties   rewritten on every start from the shipped template (edits are overwritten)
    log4j2.xml          logging config (INFO to logs/server.log, nothing on the console)
    broker.pid          pid of the running broker
    broker.out          the JVM's stdout/stderr (normally empty; crashes land here)
    logs/server.log     the broker's log
    data/               topic data and the KRaft metadata log (formatted once, kept across restarts)

Topics are NOT auto-created (``auto.create.topics.enable=false``): the workbench creates its topics
explicitly (``workbench.streams.topics.ensure_topics``), so a misspelt topic name fails loudly
instead of silently becoming a new, empty topic.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import signal
import string
import subprocess
import time
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psutil

from workbench.broker.errors import BrokerError, tail
from workbench.broker.jars import KAFKA_VERSION, fetch_jars, kafka_home_libs, libs_version
from workbench.broker.java import check_java_version, require_tools
from workbench.broker.locking import file_lock
from workbench.config import Settings
from workbench.console import Progress, say
from workbench.ports import port_free, port_holder, port_open

HEAP_ENV = "WORKBENCH_KAFKA_HEAP"
"""Environment variable for the broker's maximum heap, e.g. ``1g`` or ``512m``."""

DEFAULT_HEAP = "1g"
NODE_ID = 1

# Children started by this process, so stop() can reap them (no zombies in long-lived kernels).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class BrokerStatus:
    """A snapshot of the local broker: whether it runs, where, and where its files are."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    version: str
    log_file: Path

    def as_dict(self) -> dict[str, object]:
        """The status as JSON-ready values, for ``workbench kafka status --json``."""
        return {
            "running": self.running,
            "pid": self.pid,
            "bootstrap": self.bootstrap,
            "version": self.version,
            "data_dir": str(self.data_dir),
            "log_file": str(self.log_file),
        }

    def describe(self) -> str:
        """One human-readable line, for ``workbench kafka status``."""
        if self.running:
            return (
                f"Kafka {self.version} running at {self.bootstrap} (pid {self.pid}); "
                f"data in {self.data_dir}, log {self.log_file}"
            )
        return f"Kafka {self.version} not running (data in {self.data_dir})"


def _heap_args() -> list[str]:
    """``-Xms``/``-Xmx`` from WORKBENCH_KAFKA_HEAP (default 1g); the initial heap is ≤ 256 MB."""
    raw = os.environ.get(HEAP_ENV, "").strip() or DEFAULT_HEAP
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", raw)
    if not match or int(match.group(1)) == 0:
        raise BrokerError(f"{HEAP_ENV}={raw!r} is not a heap size like 512m or 1g")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    size = int(match.group(1)) * scale
    initial = raw if size < 256 << 20 else "256m"
    return [f"-Xms{initial}", f"-Xmx{raw}"]


def _random_cluster_id() -> str:
    """A Kafka cluster id: a random UUID, base64url without padding (22 chars), not starting '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _kafka_ready(bootstrap: str) -> bool:
    """True when the broker answers a Kafka metadata request and lists itself as unfenced."""
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="workbench-broker-check",
            bootstrap_timeout_ms=2000,
            request_timeout_ms=3000,
        )
    except Exception:  # NoBrokersAvailable, connection errors: not ready yet
        return False
    try:
        brokers = admin.describe_cluster().get("brokers", [])
        return any(b.get("broker_id") == NODE_ID and not b.get("is_fenced") for b in brokers)
    except Exception:
        return False
    finally:
        admin.close()


class LocalBroker:
    """Provisions, starts, stops and reports on the workbench's single-node Kafka broker."""

    def __init__(self, settings: Settings, progress: Progress = say) -> None:
        self.settings = settings
        self.progress = progress
        self.home = (settings.data_dir / "kafka").expanduser().resolve()
        """Everything the broker writes lives here."""
        self.log_dirs = self.home / "data"
        self.config_file = self.home / "server.properties"
        self.pid_file = self.home / "broker.pid"
        self.out_file = self.home / "broker.out"
        self.logs_dir = self.home / "logs"
        self.log_file = self.logs_dir / "server.log"

    @property
    def port(self) -> int:
        """The client (PLAINTEXT) port; the controller listens on the next one."""
        return self.settings.local_port

    @property
    def bootstrap(self) -> str:
        """Where clients connect to this broker."""
        return f"localhost:{self.port}"

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- state ----------------------------------------------------------------------------

    def _is_ours(self, proc: psutil.Process) -> bool:
        """True when ``proc`` is a live Kafka broker run from this data dir's server.properties."""
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            cmdline = proc.cmdline()
        except psutil.Error:
            return False
        return "kafka.Kafka" in cmdline and str(self.config_file) in cmdline

    def _live_pid(self, report: bool = False) -> int | None:
        """The pid of our running broker, or None; removes a pid file whose process is gone."""
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        if text.isdigit():
            pid = int(text)
            child = _CHILDREN.get(pid)
            if child is not None and child.poll() is not None:  # our child exited: reap it
                del _CHILDREN[pid]
            else:
                with contextlib.suppress(psutil.Error):
                    if self._is_ours(psutil.Process(pid)):
                        return pid
        if report:
            self.progress(f"removing stale pid file {self.pid_file} (no broker with pid {text})")
        self.pid_file.unlink(missing_ok=True)
        return None

    def _running_port(self) -> int | None:
        """The client port in the current server.properties (that of the running broker)."""
        with contextlib.suppress(OSError):
            match = re.search(
                r"^listeners=PLAINTEXT://[^:]+:(\d+)", self.config_file.read_text(), re.M
            )
            if match:
                return int(match.group(1))
        return None

    def is_running(self) -> bool:
        """True when this data dir's broker process is alive."""
        return self._live_pid() is not None

    def status(self) -> BrokerStatus:
        """Whether the broker runs, its pid and address, and where its data and log are."""
        pid = self._live_pid()
        port = (self._running_port() or self.port) if pid else self.port
        try:
            libs = kafka_home_libs()
        except BrokerError:
            libs = None
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=f"localhost:{port}",
            data_dir=self.home,
            version=libs_version(libs) if libs else KAFKA_VERSION,
            log_file=self.log_file,
        )

    # ---- provisioning ---------------------------------------------------------------------

    def _server_properties(self) -> str:
        template = resources.files("workbench.broker").joinpath("server.properties").read_text()
        return string.Template(template).substitute(
            node_id=NODE_ID, port=self.port, controller=self.port + 1, log_dirs=self.log_dirs
        )

    def _write_files(self) -> None:
        """Create the directories and (re)write server.properties and the log4j2 config."""
        for directory in (self.home, self.log_dirs, self.logs_dir):
            directory.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self._server_properties())
        log4j = resources.files("workbench.broker").joinpath("log4j2.xml").read_bytes()
        (self.home / "log4j2.xml").write_bytes(log4j)

    def _java_props(self, libs: Path) -> list[str]:
        """JVM arguments shared by the storage tool and the broker: logging and classpath."""
        return [
            f"-Dlog4j2.configurationFile={self.home / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            # Log lines are flushed as written; a shutdown hook would only warn during shutdown.
            "-Dlog4j2.shutdownHookEnabled=false",
            "-cp",
            f"{libs}{os.sep}*",
        ]

    def _format_once(self, java: str, libs: Path) -> None:
        """Format the KRaft storage if it never was; existing data is never touched."""
        if (self.log_dirs / "meta.properties").exists():
            return
        cluster_id = _random_cluster_id()
        self.progress(f"formatting new Kafka storage in {self.log_dirs} (cluster id {cluster_id})")
        cmd = [
            java,
            *self._java_props(libs),
            "kafka.tools.StorageTool", "format",
            "--config", str(self.config_file),
            "--cluster-id", cluster_id,
            "--standalone",
        ]  # fmt: skip
        try:
            done = subprocess.run(
                cmd, cwd=self.home, capture_output=True, text=True, timeout=120, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError("formatting the Kafka storage took over 2 minutes") from exc
        if done.returncode != 0:
            raise BrokerError(
                f"formatting the Kafka storage in {self.log_dirs} failed (exit {done.returncode}):"
                f"\n{tail(done.stdout + done.stderr)}"
            )

    def _log_tail(self, log_offset: int, lines: int = 30) -> str:
        """What the broker wrote since this start: the JVM's output and server.log's last lines."""
        parts = []
        with contextlib.suppress(OSError):
            out = self.out_file.read_text(errors="replace").strip()
            if out:
                parts.append(f"--- {self.out_file} ---\n{tail(out, lines)}")
        with contextlib.suppress(OSError):
            with open(self.log_file, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(log_offset if log_offset <= handle.tell() else 0)
                log = handle.read().decode(errors="replace").strip()
            if log:
                parts.append(f"--- {self.log_file} ---\n{tail(log, lines)}")
        return "\n".join(parts) or "(the broker wrote no output)"

    # ---- start / stop ---------------------------------------------------------------------

    def start(self, timeout_s: float = 60) -> None:
        """Start the broker and wait until it serves Kafka clients; a no-op if already running."""
        if not self.settings.uses_local_broker:
            raise BrokerError(
                f"KAFKA_BOOTSTRAP_SERVERS is set ({self.settings.bootstrap_servers}): the "
                "workbench uses that cluster and runs no local broker"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        with file_lock(self.home / ".start.lock"):  # a concurrent start waits, then no-ops
            self._start(timeout_s)

    def _start(self, timeout_s: float) -> None:
        pid = self._live_pid(report=True)
        if pid is not None:
            port = self._running_port()
            note = ""
            if port is not None and port != self.port:
                note = f" (not on port {self.port} as configured: stop it first to move it)"
            self.progress(
                f"Kafka broker already running at localhost:{port or self.port} (pid {pid}){note}"
            )
            return

        java, _ = require_tools(maven=False)
        check_java_version(java)
        heap = _heap_args()
        libs = fetch_jars(self.settings, self.progress)
        version = libs_version(libs)
        for port, role in ((self.port, "Kafka"), (self.port + 1, "Kafka controller")):
            if not port_free(port):
                raise BrokerError(
                    f"port {port} ({role}) on localhost is already in use by "
                    f"{port_holder(port)}; stop it, or choose another port with "
                    f"WORKBENCH_KAFKA_PORT (the controller uses that port + 1)"
                )

        self._write_files()
        self._format_once(java, libs)

        log_offset = self.log_file.stat().st_size if self.log_file.exists() else 0
        cmd = [
            java,
            *heap,
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *self._java_props(libs),
            "kafka.Kafka",
            str(self.config_file),
        ]
        self.progress(f"starting Kafka {version} broker at {self.bootstrap} (data in {self.home})")
        started = time.monotonic()
        with open(self.out_file, "wb") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=self.home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # survives the CLI and ignores its Ctrl-C
            )
        _CHILDREN[proc.pid] = proc
        tmp = self.pid_file.with_suffix(".pid.tmp")
        tmp.write_text(f"{proc.pid}\n")
        tmp.replace(self.pid_file)

        deadline = started + timeout_s
        while True:
            if proc.poll() is not None:
                _CHILDREN.pop(proc.pid, None)
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the Kafka broker exited during startup (exit {proc.returncode}):\n"
                    f"{self._log_tail(log_offset)}"
                )
            if port_open(self.port) and _kafka_ready(self.bootstrap):
                break
            if time.monotonic() > deadline:
                tail = self._log_tail(log_offset)
                self._terminate(proc.pid, timeout_s=10)
                raise BrokerError(
                    f"the Kafka broker did not become ready within {timeout_s:g}s; stopped it. "
                    f"Its output:\n{tail}"
                )
            time.sleep(0.2)
        self.progress(
            f"Kafka broker ready at {self.bootstrap} (pid {proc.pid}, "
            f"{time.monotonic() - started:.1f}s); log: {self.log_file}"
        )

    def _terminate(self, pid: int, timeout_s: float) -> bool:
        """SIGTERM, wait, then SIGKILL; True if it shut down cleanly. Removes the pid file."""
        child = _CHILDREN.pop(pid, None)

        def wait(seconds: float) -> bool:
            try:
                if child is not None:
                    child.wait(timeout=seconds)
                else:
                    psutil.Process(pid).wait(timeout=seconds)
            except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
                return False
            except psutil.NoSuchProcess:
                pass
            return True

        clean = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not wait(timeout_s):
            clean = False
            self.progress(
                f"Kafka broker (pid {pid}) did not stop within {timeout_s:g}s; killing it"
            )
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait(10)
        self.pid_file.unlink(missing_ok=True)
        return clean

    def stop(self, timeout_s: float = 30) -> None:
        """Shut the broker down cleanly (SIGTERM), kill it after ``timeout_s``; no-op if stopped."""
        pid = self._live_pid(report=True)
        if pid is None:
            self.progress(f"no Kafka broker running for {self.home}")
            return
        self.progress(f"stopping Kafka broker (pid {pid})")
        started = time.monotonic()
        if self._terminate(pid, timeout_s):
            self.progress(f"Kafka broker stopped ({time.monotonic() - started:.1f}s)")
