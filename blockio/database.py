"""The service's database: users, review queues and verdicts, with one schema on two engines.

* **SQLite** (the default): one file under a local root,
  ``ROOT/review/review.sqlite``, in WAL mode (readers never wait for the
  writer), every write in ``BEGIN IMMEDIATE`` (writers queue on the file
  lock up to ``busy_timeout`` instead of failing on an upgrade), fsync'd at
  each commit (``synchronous=FULL``), so threads and processes of one host
  lose nothing. The file must be on a local disk (WAL needs shared memory).
* **PostgreSQL** (``BLOCKIO_DATABASE_URL=postgresql://...``): when several
  hosts serve, or the root is a bucket; psycopg 3 with a connection pool.

Both take SQL written with ``?`` placeholders and the portable types
``TEXT``, ``BIGINT``, ``DOUBLE PRECISION``; in a ``CREATE TABLE`` the token
``{serial}`` stands for each engine's auto-numbered primary key. Each part of
the service declares its tables with :meth:`Database.ensure_schema`, once
per component and version, under a lock that serialises the workers.

>>> db = open_database(settings)
>>> with db.write() as tx:
...     tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", ("k", "v"))
>>> with db.read() as tx:
...     rows = tx.execute("SELECT value FROM meta WHERE key = ?", ("k",))

Every driver error comes out as :class:`blockio.errors.ReviewsUnavailable`
(503), naming the database without its password.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from blockio.errors import ReviewsUnavailable

__all__ = ["DATABASE_NAME", "Database", "PostgresDatabase", "SQLiteDatabase", "Transaction", "open_database"]

DATABASE_NAME = "review/review.sqlite"
"""The SQLite file, relative to a local root."""

_BUSY_TIMEOUT_MS = 30_000
_POOL_SIZE = 8
_SCHEMA_TABLES = (
    "CREATE TABLE IF NOT EXISTS schema_components (component TEXT PRIMARY KEY, version BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class Transaction(Protocol):
    """One open transaction: statements with ``?`` placeholders."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement; its rows (empty for statements without ``RETURNING`` or ``SELECT``)."""
        ...

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each row of parameters."""
        ...


class Database:
    """One of the two engines; see the module docstring."""

    dialect: str = ""
    serial: str = ""

    def __init__(self) -> None:
        self._ensured: set[tuple[str, int]] = set()
        self._ensure_lock = threading.Lock()

    def describe(self) -> str:
        """The engine and where it is, without credentials."""
        raise NotImplementedError

    def write(self) -> contextlib.AbstractContextManager[Transaction]:
        """A write transaction: committed at the end of the block, rolled back on an exception."""
        raise NotImplementedError

    def read(self) -> contextlib.AbstractContextManager[Transaction]:
        """A read transaction (one consistent snapshot)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close every pooled connection (the next use opens new ones)."""

    def ddl(self, statement: str) -> str:
        """``statement`` with ``{serial}`` replaced by this engine's auto-numbered primary key."""
        return statement.replace("{serial}", self.serial)

    def ensure_schema(self, component: str, version: int, statements: Sequence[str]) -> None:
        """Create ``component``'s tables (statements run once, in order, while its stored version is lower).

        Statements must be idempotent (``CREATE TABLE IF NOT EXISTS``, ...):
        a component moves from version n to n + 1 by running all of them.
        """
        if (component, version) in self._ensured:
            return
        with self._ensure_lock:
            if (component, version) in self._ensured:
                return
            with self._schema_lock() as tx:
                for statement in _SCHEMA_TABLES:
                    tx.execute(statement)
                rows = tx.execute("SELECT version FROM schema_components WHERE component = ?", (component,))
                if not rows or int(rows[0][0]) < version:
                    for statement in statements:
                        tx.execute(self.ddl(statement))
                    tx.execute("DELETE FROM schema_components WHERE component = ?", (component,))
                    tx.execute("INSERT INTO schema_components (component, version) VALUES (?, ?)", (component, version))
            self._ensured.add((component, version))

    def _schema_lock(self) -> contextlib.AbstractContextManager[Transaction]:
        return self.write()

    def _unavailable(self, exc: Exception) -> ReviewsUnavailable:
        return ReviewsUnavailable(f"the review database ({self.describe()}) cannot be used: {exc.__class__.__name__}: {exc}")


class _SQLiteTransaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, tuple(params)).fetchall()

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, [tuple(r) for r in rows])


class SQLiteDatabase(Database):
    """SQLite in WAL mode, one file (default ``ROOT/review/review.sqlite``)."""

    dialect = "sqlite"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self.path = Path(path)
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def describe(self) -> str:
        return f"SQLite {self.path.name}"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._pid != os.getpid():  # a forked worker: the parent's connections are not ours to use
                self._idle, self._pid = [], os.getpid()
            conn = self._idle.pop() if self._idle else None
        try:
            conn = conn or self._connect()
        except (sqlite3.Error, OSError) as exc:
            raise self._unavailable(exc) from exc
        try:
            yield conn
        except BaseException:
            conn.close()  # its state is unknown: do not pool it
            raise
        with self._lock:
            if len(self._idle) < _POOL_SIZE and self._pid == os.getpid():
                self._idle.append(conn)
                return
        conn.close()

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[Transaction]:
        with self._connection() as conn:
            try:
                conn.execute(begin)
            except sqlite3.Error as exc:
                raise self._unavailable(exc) from exc
            try:
                yield _SQLiteTransaction(conn)
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._unavailable(exc) from exc
                raise

    def write(self) -> contextlib.AbstractContextManager[Transaction]:
        return self._transaction("BEGIN IMMEDIATE")

    def read(self) -> contextlib.AbstractContextManager[Transaction]:
        return self._transaction("BEGIN")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


@functools.lru_cache(maxsize=512)
def _to_pyformat(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _PostgresTransaction:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._conn.execute(_to_pyformat(sql), tuple(params))
        return list(cur.fetchall()) if cur.description is not None else []

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_to_pyformat(sql), [tuple(r) for r in rows])


class PostgresDatabase(Database):
    """PostgreSQL through psycopg 3 and its connection pool (``pip install 'blockio[postgres]'``)."""

    dialect = "postgresql"
    serial = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, *, pool_size: int = _POOL_SIZE, timeout_s: float = _BUSY_TIMEOUT_MS / 1000) -> None:
        super().__init__()
        self.url = url
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self._pool: Any = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def describe(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or "local socket"
        netloc = host + (f":{parts.port}" if parts.port else "")
        return "PostgreSQL " + urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def _get_pool(self) -> Any:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                try:
                    from psycopg_pool import ConnectionPool
                except ImportError as exc:
                    raise ReviewsUnavailable("BLOCKIO_DATABASE_URL names PostgreSQL: install psycopg (pip install 'blockio[postgres]')") from exc
                self._pool = ConnectionPool(self.url, min_size=1, max_size=self.pool_size, kwargs={"autocommit": True}, open=False)
                self._pool.open(wait=False)
                self._pid = os.getpid()
            return self._pool

    @contextlib.contextmanager
    def _transaction(self, *, lock: bool = False) -> Iterator[Transaction]:
        import psycopg
        import psycopg_pool

        try:
            with self._get_pool().connection(timeout=self.timeout_s) as conn, conn.transaction():
                if lock:  # schema changes by several workers at once wait for each other
                    conn.execute("SELECT pg_advisory_xact_lock(7201388)")
                yield _PostgresTransaction(conn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise self._unavailable(exc) from exc

    def write(self) -> contextlib.AbstractContextManager[Transaction]:
        return self._transaction()

    def read(self) -> contextlib.AbstractContextManager[Transaction]:
        return self._transaction()

    def _schema_lock(self) -> contextlib.AbstractContextManager[Transaction]:
        return self._transaction(lock=True)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close()


def open_database(*, root: str | os.PathLike[str], url: str | None = None) -> Database:
    """The database of a service: PostgreSQL when ``url`` (``BLOCKIO_DATABASE_URL``) is given, else SQLite under ``root``.

    ``url`` may also be ``sqlite:///absolute/path.sqlite``. Nothing is opened
    until the first transaction. A bucket root without ``url`` raises
    :class:`~blockio.errors.ReviewsUnavailable` at first use.
    """
    if url:
        scheme = urlsplit(url).scheme.lower()
        if scheme in ("postgres", "postgresql"):
            return PostgresDatabase(url)
        if scheme == "sqlite":
            return SQLiteDatabase(urlsplit(url).path)
        raise ReviewsUnavailable(f"BLOCKIO_DATABASE_URL must be postgresql://... or sqlite:///..., got a {scheme or 'bare'} URL")
    from blockio.roots import local_folder

    folder = local_folder(root)
    if folder is None:
        return _NoDatabase()
    return SQLiteDatabase(folder / DATABASE_NAME)


class _NoDatabase(Database):
    """A bucket root with no BLOCKIO_DATABASE_URL: every use says what to set."""

    def describe(self) -> str:
        return "none"

    def _fail(self) -> contextlib.AbstractContextManager[Transaction]:
        raise ReviewsUnavailable("users and verdicts need a database: the root is a bucket, so set BLOCKIO_DATABASE_URL=postgresql://...")

    write = read = _schema_lock = _fail
