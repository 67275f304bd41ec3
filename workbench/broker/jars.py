"""The jars the local broker runs on: from ``KAFKA_HOME``, or from Maven Central once, cached.

``fetch_jars`` copies Kafka's runtime dependencies (the shipped ``pom.xml``) into
``settings.cache_dir/kafka/<version>/libs`` with ``mvn dependency:copy-dependencies``; a marker
written after a complete copy makes an interrupted download be redone, and a file lock keeps two
processes from downloading into the same cache at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from importlib import resources
from pathlib import Path

from workbench.broker.errors import BrokerError, tail
from workbench.broker.java import require_tools
from workbench.broker.locking import file_lock
from workbench.config import Settings
from workbench.console import Progress, say

KAFKA_VERSION = "4.2.0"
"""The Apache Kafka release the workbench downloads and runs."""


def kafka_home_libs() -> Path | None:
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


def libs_version(libs: Path) -> str:
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


def fetch_jars(settings: Settings, progress: Progress = say) -> Path:
    """The directory of jars the broker runs on; downloads them with Maven on first use only.

    ``$KAFKA_HOME/libs`` wins when KAFKA_HOME is set. Otherwise the jars go to
    ``settings.cache_dir/kafka/<version>/libs``; a marker is written only after a complete copy,
    so an interrupted download is simply redone next time.
    """
    home_libs = kafka_home_libs()
    if home_libs is not None:
        return home_libs
    cached = _cached_libs(settings)
    if cached is not None:
        return cached

    _, mvn = require_tools(maven=True)
    assert mvn is not None
    root = _cache_root(settings)
    with file_lock(root / ".lock"):
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
                    f"~/.m2/settings.xml)? Maven said:\n{tail(done.stdout + done.stderr)}"
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
