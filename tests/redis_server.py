"""A real ``redis-server`` for tests, on a free loopback port in a temp folder.

Use the fixtures from any test module::

    from tests.redis_server import redis_server, redis_server_factory  # noqa: F401

    def test_something(redis_server: RedisServer) -> None:
        cache = RedisCache(redis_server.url)
        redis_server.stop()    # killed mid-run
        redis_server.start()   # back on the same port

Tests using them are skipped, with the reason, where ``redis-server`` is not
installed (CI installs it). Nothing here touches another Redis on the host:
every server binds 127.0.0.1 on a port the kernel just handed out.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server", "redis_server_factory"]

START_TIMEOUT_S = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process that can be stopped and started again.

    Parameters
    ----------
    directory
        Its working folder (``--dir``) and log file; nothing is persisted.
    maxmemory
        ``--maxmemory`` (bytes or ``"64mb"``), with ``allkeys-lru`` eviction.
    port
        Default: a free port, kept across :meth:`stop` / :meth:`start`.
    """

    def __init__(self, directory: Path, *, maxmemory: int | str = "64mb", port: int | None = None, executable: str | None = None) -> None:
        exe = executable or shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server is not installed")
        self.executable = exe
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.maxmemory = str(maxmemory)
        self.port = port if port is not None else free_port()
        self.log_path = self.directory / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        """Start (or restart) the server and wait until it answers PING."""
        if self.running:
            return self
        args = [
            self.executable,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "allkeys-lru",
            "--dir", str(self.directory),
            "--logfile", str(self.log_path),
            "--daemonize", "no",
        ]  # fmt: skip
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if self.ping():
                return self
            time.sleep(0.01)
        self.stop()
        log = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {START_TIMEOUT_S} s; its log:\n{log}")

    def stop(self) -> None:
        """Kill the server at once (SIGKILL: no shutdown courtesy, like a crash)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=START_TIMEOUT_S)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it accepts connections but never answers."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo :meth:`pause`."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGCONT)

    def ping(self, timeout_s: float = 0.5) -> bool:
        """Whether the server answers PING (raw RESP: no client library needed)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()  # SIGKILL ends a paused server too


def _require_redis_server() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (CI installs it: apt-get install redis-server)")


@pytest.fixture
def redis_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """Start servers with options, ``factory(maxmemory="1mb")``; all are killed at teardown."""
    _require_redis_server()
    servers: list[RedisServer] = []

    def factory(*, maxmemory: int | str = "64mb") -> RedisServer:
        for attempt in range(3):
            server = RedisServer(tmp_path_factory.mktemp("redis"), maxmemory=maxmemory)
            servers.append(server)
            try:
                return server.start()
            except RuntimeError:
                if attempt == 2:  # another process took the free port each time
                    raise
        raise AssertionError("unreachable")

    try:
        yield factory
    finally:
        for server in servers:
            server.__exit__()


@pytest.fixture
def redis_server(redis_server_factory: Callable[..., RedisServer]) -> RedisServer:
    """A running ``redis-server`` (64 MiB, allkeys-lru) private to the test."""
    return redis_server_factory()

