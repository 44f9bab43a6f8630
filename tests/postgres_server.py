"""A PostgreSQL server of the tests' own: ``initdb`` and ``pg_ctl`` in a temp folder, on a free loopback port.

Use the fixtures from any test module::

    from tests.postgres_server import postgres_server, postgres_url  # noqa: F401

    @pytest.mark.postgres
    def test_something(postgres_url: str) -> None:   # a fresh, empty database of that server
        db = open_database(root=tmp_path, url=postgres_url)

The server starts once per test session and every test gets its own database
(``CREATE DATABASE``), so tests never see each other's rows. Nothing here
touches another PostgreSQL on the host: the server listens on 127.0.0.1 at a
port the kernel just handed out, with its socket in its own folder. Tests
are skipped, with the reason, where ``initdb`` is not installed (CI installs
Debian's ``postgresql``). PostgreSQL refuses to run as root, so as root the
folder is given to the ``postgres`` user and the commands run as that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import free_port

__all__ = ["PostgresServer", "find_pg_bin", "postgres_server", "postgres_url"]

START_TIMEOUT_S = 60


def find_pg_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on ``PATH``, else Debian's ``/usr/lib/postgresql/N/bin``."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "initdb").exists():
            return Path(folder)
    return None


class PostgresServer:
    """One PostgreSQL cluster in ``directory``; :meth:`start`, :meth:`stop`, :meth:`new_database`."""

    def __init__(self, directory: Path, *, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_pg_bin()
        if found is None:
            raise FileNotFoundError("initdb is not installed")
        self.bin_dir = found
        self.directory = Path(directory)
        self.data = self.directory / "data"
        self.port = free_port()
        self.log_path = self.directory / "postgres.log"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=START_TIMEOUT_S)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        """``initdb`` (trust authentication, loopback only) and start; returns when it accepts connections."""
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200"
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log_path), "-w", "-t", str(START_TIMEOUT_S), "start")
        return self

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def new_database(self) -> str:
        """A new empty database on this server; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole test session (skipped where initdb is absent)."""
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL's initdb is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[test]')")
    # not under pytest's tmp_path: its parents are private to root, and the server runs as postgres
    directory = Path(tempfile.mkdtemp(prefix="blockio-pg-"))
    server = PostgresServer(directory)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = server.log_path.read_text(errors="replace")[-2000:] if server.log_path.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise RuntimeError(f"PostgreSQL did not start: {exc.stderr.decode(errors='replace')[-2000:]}\n{log}") from exc
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh database on the session's server."""
    return postgres_server.new_database()
