"""TCP ports on this machine: is one free, who holds it, does it answer, pick a free one.

The local broker, the Voilà dashboard and the tests' servers all refuse a taken port up front
with these, so a readiness probe never mistakes another program for the one just started.
"""

from __future__ import annotations

import errno
import socket

import psutil


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now, picked by the operating system."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _addresses(host: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return ["127.0.0.1"]
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def port_free(port: int, host: str = "localhost") -> bool:
    """True when a server could listen on ``host:port`` (every address ``host`` resolves to)."""
    for address in _addresses(host):
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            try:
                sock.bind((address, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return False
                if exc.errno != errno.EADDRNOTAVAIL:  # e.g. no IPv6 on this host
                    raise
    return True


def port_holder(port: int) -> str:
    """Which process listens on ``port``, in words, as far as the OS lets us see it."""
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
            except psutil.Error:  # gone, a zombie, or not ours to inspect
                return f"process {conn.pid}"
            if "kafka.Kafka" in cmdline:
                config = cmdline[-1] if cmdline else "?"
                return f"another Kafka broker (pid {conn.pid}, config {config})"
            return f"process {conn.pid} ({name})"
    return "another process"


def port_open(port: int, host: str = "localhost", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
