"""TLS for the workbench's servers (the live API and the dashboard): one certificate setting."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from workbench.config import ConfigError

CERT_ENV = "WORKBENCH_TLS_CERT"
KEY_ENV = "WORKBENCH_TLS_KEY"


def tls_files_from_env() -> tuple[Path | None, Path | None]:
    """The certificate and key named by WORKBENCH_TLS_CERT and WORKBENCH_TLS_KEY (or None)."""
    cert, key = os.environ.get(CERT_ENV), os.environ.get(KEY_ENV)
    return (Path(cert) if cert else None), (Path(key) if key else None)


def check_tls_files(certfile: Path | None, keyfile: Path | None) -> None:
    """ConfigError unless both or neither are given, and given ones exist."""
    if (certfile is None) != (keyfile is None):
        raise ConfigError("TLS needs both a certificate file and a key file")
    for path in (certfile, keyfile):
        if path is not None and not Path(path).is_file():
            raise ConfigError(f"TLS file {path} does not exist")


def server_context(certfile: Path | str, keyfile: Path | str) -> ssl.SSLContext:
    """A server-side TLS context (TLS 1.2 or newer) on this certificate and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    return context


def tls_pair(certfile: Path | None, keyfile: Path | None) -> tuple[Path, Path] | None:
    """The certificate and key to serve with: the ones given, else WORKBENCH_TLS_CERT/KEY; None
    for plain HTTP. ConfigError for half a pair or a missing file."""
    if certfile is None and keyfile is None:
        certfile, keyfile = tls_files_from_env()
    check_tls_files(certfile, keyfile)
    return (certfile, keyfile) if certfile and keyfile else None
