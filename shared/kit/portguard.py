"""Refuse to start on a taken port, and say who holds it.

The classic failure of this kind of mesh (see the seeds) is two processes
silently fighting for one port. The service binds its socket itself, before
anything else, so there is no window between checking and binding.
"""

from __future__ import annotations

import errno
import socket

import psutil


class PortTaken(RuntimeError):
    """The port is held by another process; the message names it when the OS lets us see it."""

    def __init__(self, port: int, service: str, holder: str | None) -> None:
        self.port = port
        self.holder = holder
        who = holder or "another process (not visible to this user)"
        super().__init__(f"port {port} for {service} is already taken by {who}; refusing to start")


def port_holder(port: int) -> str | None:
    """Describe the process holding ``port`` (``pid 123 (python -m ...)``), or None.

    A listener first; else a connection whose local end is the port (an outgoing
    connection given it as its ephemeral port blocks a bind just the same).
    """
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, PermissionError):
        return None
    on_port = [c for c in connections if c.laddr and c.laddr.port == port]
    for conn in sorted(on_port, key=lambda c: c.status != psutil.CONN_LISTEN):
        if conn.pid is None:
            return "a process whose pid is not visible to this user"
        try:
            proc = psutil.Process(conn.pid)
            command = " ".join(proc.cmdline()) or proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            command = "?"
        what = "" if conn.status == psutil.CONN_LISTEN else f", a {conn.status} connection from that port"
        return f"pid {conn.pid} ({command[:160]}){what}"
    return None


def ensure_free(port: int, service: str, host: str = "127.0.0.1") -> None:
    """Raise ``PortTaken`` unless ``port`` can be bound now (for a child process that binds it itself)."""
    bind_or_explain(host, port, service).close()


def is_listening(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.2)
        return probe.connect_ex((host, port)) == 0


def bind_or_explain(host: str, port: int, service: str) -> socket.socket:
    """Bind a listening socket for ``service`` or raise ``PortTaken`` naming the holder."""
    # IPPROTO_TCP explicitly: accepted sockets then get TCP_NODELAY from asyncio (no 40 ms Nagle stalls).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # SO_REUSEADDR only lets us reuse a port in TIME_WAIT; it never lets two listeners share one.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(port, service, port_holder(port)) from exc
        raise
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock
