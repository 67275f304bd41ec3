"""The workbench's own Apache Kafka broker: one local KRaft node (broker+controller, no ZooKeeper).

The jars come from Maven Central once (``fetch_jars``, cached under ``settings.cache_dir``) or from
an Apache Kafka distribution named by ``KAFKA_HOME``. Everything the broker writes lives under
``settings.data_dir / "kafka"``::

    server.properties   rewritten on every start from the settings (edits are overwritten)
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
import errno
import fcntl
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import psutil

from workbench.config import Settings

KAFKA_VERSION = "4.2.0"
"""The Apache Kafka release the workbench downloads and runs."""

MIN_JAVA = 17
"""Kafka 4.x brokers need Java 17 or newer."""

HEAP_ENV = "WORKBENCH_KAFKA_HEAP"
"""Environment variable for the broker's maximum heap, e.g. ``1g`` or ``512m``."""

DEFAULT_HEAP = "1g"
NODE_ID = 1

Progress = Callable[[str], None]

INSTALL_HINT = (
    "Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless maven; "
    "conda: conda install -c conda-forge openjdk=17 maven"
)

# Children started by this process, so stop() can reap them (no zombies in long-lived kernels).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class BrokerError(RuntimeError):
    """The local broker could not be provisioned, started or stopped; the message says why."""


def stderr_progress(message: str) -> None:
    """Default progress reporter: one line on stderr, so stdout stays clean for the CLI's output."""
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Tools and jars


def _find_java() -> str | None:
    """The ``java`` to run: ``$JAVA_HOME/bin/java`` if present, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def _require_tools(*, maven: bool) -> tuple[str, str | None]:
    """Paths of java (and mvn if ``maven``); one BrokerError naming everything that is missing."""
    java = _find_java()
    mvn = shutil.which("mvn") if maven else None
    missing = []
    if java is None:
        missing.append(f"Java {MIN_JAVA}+ (java)")
    if maven and mvn is None:
        missing.append("Apache Maven (mvn)")
    if missing:
        what = " and ".join(missing)
        raise BrokerError(
            f"the local Kafka broker needs {what}, not found on PATH. Install "
            f"{'them' if len(missing) > 1 else 'it'} ({INSTALL_HINT}), or set KAFKA_HOME to an "
            f"Apache Kafka {KAFKA_VERSION} distribution (no Maven needed), or set "
            "KAFKA_BOOTSTRAP_SERVERS to use an existing cluster instead."
        )
    assert java is not None
    return java, mvn


def _check_java_version(java: str) -> None:
    """Raise BrokerError if ``java`` is older than Kafka needs (unparseable versions pass)."""
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"could not run {java} -version: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_392" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise BrokerError(
            f"{java} is Java {major}; Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+ "
            f"({INSTALL_HINT}), or point JAVA_HOME at a newer JDK."
        )


def _kafka_home_libs() -> Path | None:
    """``$KAFKA_HOME/libs`` if KAFKA_HOME is set; BrokerError if it is no Kafka distribution."""
    home = os.environ.get("KAFKA_HOME")
    if not home:
        return None
    libs = Path(home).expanduser() / "libs"
    if not any(libs.glob("kafka_2.*.jar")):
        raise BrokerError(
            f"KAFKA_HOME={home} does not look like an Apache Kafka distribution "
            f"(no {libs}/kafka_2.*.jar); unset it to let the workbench download Kafka itself."
        )
    return libs


def _libs_version(libs: Path) -> str:
    """The Kafka version of a libs directory, read from its kafka-clients jar name."""
    for jar in libs.glob("kafka-clients-*.jar"):
        version = jar.name.removeprefix("kafka-clients-").removesuffix(".jar")
        if re.fullmatch(r"\d+\.\d+\.\d+\S*", version):
            return version
    return "unknown"


def _pom_text() -> bytes:
    """The shipped pom.xml listing the broker's Maven dependencies."""
    return resources.files("workbench.broker").joinpath("pom.xml").read_bytes()


def _cache_root(settings: Settings) -> Path:
    return settings.cache_dir / "kafka" / KAFKA_VERSION


def _stamp() -> str:
    """What the marker file must say: changes when the version or the pom change."""
    digest = hashlib.sha256(_pom_text() + KAFKA_VERSION.encode()).hexdigest()
    return f"kafka {KAFKA_VERSION} pom-sha256 {digest}\n"


def _cached_libs(settings: Settings) -> Path | None:
    """The cached libs directory if a complete download is there, else None."""
    root = _cache_root(settings)
    libs = root / "libs"
    marker = root / "complete"
    try:
        ok = marker.read_text() == _stamp()
    except OSError:
        return None
    if ok and (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        return libs
    return None


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never download into the same cache at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _tail(text: str, lines: int = 30) -> str:
    """The last ``lines`` lines of ``text``, without terminal colour codes (Maven emits some)."""
    return "\n".join(re.sub(r"\x1b\[[0-9;]*m", "", text).strip().splitlines()[-lines:])


def jars_available(settings: Settings) -> bool:
    """True when ``fetch_jars`` would return at once (jars cached, or KAFKA_HOME set)."""
    return bool(os.environ.get("KAFKA_HOME")) or _cached_libs(settings) is not None


def fetch_jars(settings: Settings, progress: Progress = stderr_progress) -> Path:
    """The directory of jars the broker runs on; downloads them with Maven on first use only.

    ``$KAFKA_HOME/libs`` wins when KAFKA_HOME is set. Otherwise the jars go to
    ``settings.cache_dir/kafka/<version>/libs``; a marker is written only after a complete copy,
    so an interrupted download is simply redone next time.
    """
    home_libs = _kafka_home_libs()
    if home_libs is not None:
        return home_libs
    cached = _cached_libs(settings)
    if cached is not None:
        return cached

    _, mvn = _require_tools(maven=True)
    assert mvn is not None
    root = _cache_root(settings)
    with _file_lock(root / ".lock"):
        cached = _cached_libs(settings)  # another process may have finished while we waited
        if cached is not None:
            return cached
        (root / "complete").unlink(missing_ok=True)
        for leftover in root.glob("fetch-*"):  # from an interrupted download
            shutil.rmtree(leftover, ignore_errors=True)

        progress(f"downloading Apache Kafka {KAFKA_VERSION} jars from Maven Central (once)…")
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix="fetch-", dir=root))
        try:
            (work / "pom.xml").write_bytes(_pom_text())
            out_dir = work / "libs"
            cmd = [
                mvn, "-B", "-q", "-Dstyle.color=never",
                "-f", str(work / "pom.xml"),
                "dependency:copy-dependencies",
                f"-Dkafka.version={KAFKA_VERSION}",
                f"-DoutputDirectory={out_dir}",
                "-DincludeScope=runtime",
            ]  # fmt: skip
            try:
                done = subprocess.run(
                    cmd, cwd=work, capture_output=True, text=True, timeout=1800, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise BrokerError(
                    "Maven did not finish downloading Kafka within 30 minutes"
                ) from exc
            if done.returncode != 0:
                raise BrokerError(
                    f"Maven could not download Apache Kafka {KAFKA_VERSION} (exit "
                    f"{done.returncode}); is Maven Central reachable (proxy settings in "
                    f"~/.m2/settings.xml)? Maven said:\n{_tail(done.stdout + done.stderr)}"
                )
            kafka_jar = out_dir / f"kafka_2.13-{KAFKA_VERSION}.jar"
            if not kafka_jar.is_file():
                raise BrokerError(f"Maven finished but {kafka_jar.name} is not among the jars")
            libs = root / "libs"
            if libs.exists():
                shutil.rmtree(libs)
            out_dir.rename(libs)
            marker_tmp = root / "complete.tmp"
            marker_tmp.write_text(_stamp())
            marker_tmp.replace(root / "complete")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        count = len(list(libs.glob("*.jar")))
        progress(f"cached {count} jars in {libs} ({time.monotonic() - started:.1f}s)")
        return libs


# --------------------------------------------------------------------------------------------
# The broker


@dataclass(frozen=True)
class BrokerStatus:
    """A snapshot of the local broker: whether it runs, where, and where its files are."""

    running: bool
    pid: int | None
    bootstrap: str
    data_dir: Path
    version: str
    log_file: Path

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


def _bind_addresses(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return ["127.0.0.1"]
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _port_free(port: int) -> bool:
    """True when the broker could listen on ``localhost:port``."""
    for address in _bind_addresses("localhost"):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the JVM does
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                if exc.errno != errno.EADDRNOTAVAIL:  # e.g. no IPv6 on this host
                    raise
    return True


def _port_holder(port: int) -> str:
    """Which process listens on ``port``, as words, if the OS lets us see it."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return "another process"
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "another process"
            try:
                proc = psutil.Process(conn.pid)
                cmdline = proc.cmdline()
                name = proc.name()
            except psutil.Error:
                return f"process {conn.pid}"
            if "kafka.Kafka" in cmdline:
                config = cmdline[-1] if cmdline else "?"
                return f"another Kafka broker (pid {conn.pid}, config {config})"
            return f"process {conn.pid} ({name})"
    return "another process"


def _port_open(port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``localhost:port``."""
    try:
        with socket.create_connection(("localhost", port), timeout=timeout):
            return True
    except OSError:
        return False


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

    def __init__(self, settings: Settings, progress: Progress = stderr_progress) -> None:
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
            libs = _kafka_home_libs()
        except BrokerError:
            libs = None
        return BrokerStatus(
            running=pid is not None,
            pid=pid,
            bootstrap=f"localhost:{port}",
            data_dir=self.home,
            version=_libs_version(libs) if libs else KAFKA_VERSION,
            log_file=self.log_file,
        )

    # ---- provisioning ---------------------------------------------------------------------

    def _server_properties(self) -> str:
        port, controller = self.port, self.port + 1
        return f"""\
# Written by workbench.broker.local on every start: edits here are overwritten.
# One KRaft node acting as broker and controller, tuned for a laptop.
process.roles=broker,controller
node.id={NODE_ID}
controller.quorum.bootstrap.servers=localhost:{controller}
listeners=PLAINTEXT://localhost:{port},CONTROLLER://localhost:{controller}
advertised.listeners=PLAINTEXT://localhost:{port}
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs={self.log_dirs}

# Topics are created explicitly by the workbench, never by a typo.
auto.create.topics.enable=false
num.partitions=6
default.replication.factor=1
min.insync.replicas=1

# Internal topics: one replica, few partitions.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=6
group.initial.rebalance.delay.ms=0

# Keep a day of data, at most 512 MiB per partition; roll segments often enough to expire.
log.retention.hours=24
log.retention.bytes=536870912
log.segment.bytes=134217728
log.roll.hours=6

# Small thread pools and buffers.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
"""

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
                f"\n{_tail(done.stdout + done.stderr)}"
            )

    def _log_tail(self, log_offset: int, lines: int = 30) -> str:
        """What the broker wrote since this start: the JVM's output and server.log's last lines."""
        parts = []
        with contextlib.suppress(OSError):
            out = self.out_file.read_text(errors="replace").strip()
            if out:
                parts.append(f"--- {self.out_file} ---\n{_tail(out, lines)}")
        with contextlib.suppress(OSError):
            with open(self.log_file, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(log_offset if log_offset <= handle.tell() else 0)
                log = handle.read().decode(errors="replace").strip()
            if log:
                parts.append(f"--- {self.log_file} ---\n{_tail(log, lines)}")
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
        with _file_lock(self.home / ".start.lock"):  # a concurrent start waits, then no-ops
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

        java, _ = _require_tools(maven=False)
        _check_java_version(java)
        heap = _heap_args()
        libs = fetch_jars(self.settings, self.progress)
        version = _libs_version(libs)
        for port, role in ((self.port, "Kafka"), (self.port + 1, "Kafka controller")):
            if not _port_free(port):
                raise BrokerError(
                    f"port {port} ({role}) on localhost is already in use by "
                    f"{_port_holder(port)}; stop it, or choose another port with "
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
            if _port_open(self.port) and _kafka_ready(self.bootstrap):
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
