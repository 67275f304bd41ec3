"""Finding the Java (and Maven) the local broker needs; one clear error when they are missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from workbench.broker.errors import BrokerError

MIN_JAVA = 17
"""Kafka 4.x brokers need Java 17 or newer."""

INSTALL_HINT = (
    "Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless maven; "
    "conda: conda install -c conda-forge openjdk=17 maven"
)


def find_java() -> str | None:
    """The ``java`` to run: ``$JAVA_HOME/bin/java`` if present, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


def require_tools(*, maven: bool) -> tuple[str, str | None]:
    """Paths of java (and mvn if ``maven``); one BrokerError naming everything that is missing."""
    java = find_java()
    mvn = shutil.which("mvn") if maven else None
    missing = []
    if java is None:
        missing.append(f"Java {MIN_JAVA}+ (java)")
    if maven and mvn is None:
        missing.append("Apache Maven (mvn)")
    if missing or java is None:
        what = " and ".join(missing)
        raise BrokerError(
            f"the local Kafka broker needs {what}, not found on PATH. Install "
            f"{'them' if len(missing) > 1 else 'it'} ({INSTALL_HINT}), or set KAFKA_HOME to an "
            "Apache Kafka distribution (no Maven needed), or set "
            "KAFKA_BOOTSTRAP_SERVERS to use an existing cluster instead."
        )
    return java, mvn


def check_java_version(java: str) -> None:
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
            f"{java} is Java {major}; Apache Kafka 4 needs Java {MIN_JAVA}+ "
            f"({INSTALL_HINT}), or point JAVA_HOME at a newer JDK."
        )
