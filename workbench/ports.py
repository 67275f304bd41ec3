"""Loopback ports for servers the workbench starts on the side (benchmarks, tests)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, picked by the operating system."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
