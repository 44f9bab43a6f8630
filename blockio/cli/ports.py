"""Is a port free? Asked before a command does minutes of work and then fails to serve."""

from __future__ import annotations

import errno
import socket

__all__ = ["busy_port_message", "free_port"]

_SEARCH = 100
"""Ports above the busy one tried before asking the system for any free one."""


def _bind_error(host: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # as werkzeug's server does, so a port in TIME_WAIT counts as free and a listening one as busy
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return exc
    return None


def free_port(host: str, *, after: int) -> int:
    """A port that ``host`` can bind now: the first free one above ``after``, else any the system gives.

    Parameters
    ----------
    host
        The interface to serve on (``127.0.0.1``, ``0.0.0.0``, ``::1``).
    after
        The busy port; its neighbours are tried first so the suggestion is easy to type.
    """
    for port in range(after + 1, min(after + 1 + _SEARCH, 65536)):
        if _bind_error(host, port) is None:
            return port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def busy_port_message(host: str, port: int) -> str | None:
    """``None`` when ``host:port`` can be served on; else one line saying what to do instead.

    Parameters
    ----------
    host
        The interface to serve on.
    port
        The port asked for.
    """
    exc = _bind_error(host, port)
    if exc is None:
        return None
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use; try --port {free_port(host, after=port)}"
    return f"cannot serve on {host}:{port}: {exc.strerror or exc}"
