"""The embedded engine: SQLite with the sqlite-vec extension, one file per dataset.

Python's own ``sqlite3`` here cannot load extensions; apsw can
(``enable_load_extension`` then ``sqlite_vec.loadable_path()``). Each set is
a ``vec0`` virtual table ``"set:<name>"``: the stored key (``key - 2**63``)
as its primary key, the vector, ``layer``, ``model`` and the centre
``cx, cy, cz`` as metadata columns (filterable inside the k-NN scan), and
the box as an auxiliary column. The k-NN is sqlite-vec's exact scan. The
file is memory-mapped, so a query reads the vectors from the page cache
rather than through SQLite's own small cache.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.embeddings.index import VectorIndex
from blockio.embeddings.rows import Hit, Rows, Where, from_stored, to_stored

__all__ = ["SqliteIndex"]

_MMAP_BYTES = 1 << 34
_BATCH = 5000


class SqliteIndex(VectorIndex):
    """A set in ``index.sqlite`` (created with its table on first use).

    Parameters
    ----------
    path
        The dataset's index file.
    """

    engine = "sqlite"

    def __init__(self, path: str | Path, name: str, *, dim: int, metric: str = "l2") -> None:
        super().__init__(name, dim, metric)
        self.path = Path(path)
        self._local = threading.local()  # one connection per thread: apsw connections are not shared across threads here
        self._table = '"set:' + name + '"'
        self._ensure()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            import apsw
            import sqlite_vec

            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = apsw.Connection(str(self.path))
            conn.enable_load_extension(True)
            conn.load_extension(sqlite_vec.loadable_path())
            conn.enable_load_extension(False)
            conn.set_busy_timeout(30_000)
            conn.execute(f"pragma mmap_size={_MMAP_BYTES}")
            conn.execute("pragma journal_mode=wal")
            self._local.conn = conn
        return conn

    def _ensure(self) -> None:
        conn = self._conn()
        found = conn.execute("select sql from sqlite_master where name = ?", (f"set:{self.name}",)).fetchone()
        if found is not None:
            text = str(found[0])
            if f"float[{self.dim}]" not in text or f"distance_metric={self.metric}" not in text:
                from blockio.errors import Conflict

                raise Conflict(f"set {self.name!r} in {self.path} was created as {text!r}, not {self.dim}-d {self.metric}")
            return
        conn.execute(
            f"create virtual table if not exists {self._table} using vec0("
            f"key integer primary key, vector float[{self.dim}] distance_metric={self.metric}, "
            "layer text, model text, cx float, cy float, cz float, +box text)"
        )

    def version(self) -> str:
        import apsw

        return f"sqlite {apsw.sqlite_lib_version()}, sqlite-vec {self._conn().execute('select vec_version()').fetchone()[0]}"

    def add(self, rows: Rows) -> None:
        self._check_rows(rows)
        if not len(rows):
            return
        stored = to_stored(rows.keys)
        conn = self._conn()
        for lo in range(0, len(rows), _BATCH):
            hi = min(lo + _BATCH, len(rows))
            keys = [int(v) for v in stored[lo:hi]]
            with conn:  # one transaction per batch: a replaced row is deleted and inserted together
                conn.executemany(f"delete from {self._table} where key = ?", ((k,) for k in keys))
                conn.executemany(
                    f"insert into {self._table}(key, vector, layer, model, cx, cy, cz, box) values (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        (keys[i - lo], rows.vectors[i].tobytes(), str(rows.layer[i]), str(rows.model[i]), *map(float, rows.centres[i]), json.dumps([int(v) for v in rows.boxes[i]]))
                        for i in range(lo, hi)
                    ),
                )

    def knn(self, vector: npt.ArrayLike, k: int = 10, where: Where | None = None) -> list[Hit]:
        q = self._check_query(vector, k)
        clauses, params = (where or Where()).sql()
        extra = "".join(f" and {c}" for c in clauses)
        sql = f"select key, distance, cx, cy, cz, box, layer, model from {self._table} where vector match ? and k = ?{extra} order by distance"
        out = []
        for key, distance, cx, cy, cz, box, layer, model in self._conn().execute(sql, (q.tobytes(), int(k), *params)):
            out.append(Hit(int(from_stored([key])[0]), float(distance), (cx, cy, cz), tuple(json.loads(box)), layer, model))
        return out

    def get(self, keys: npt.ArrayLike) -> Rows:
        wanted = to_stored(np.atleast_1d(np.asarray(keys, dtype=np.uint64)))
        found: dict[int, tuple[Any, ...]] = {}
        conn = self._conn()
        for lo in range(0, len(wanted), 500):
            part = [int(v) for v in wanted[lo : lo + 500]]
            marks = ",".join("?" * len(part))
            for row in conn.execute(f"select key, vector, cx, cy, cz, box, layer, model from {self._table} where key in ({marks})", part):
                found[int(row[0])] = row
        order = [found[int(k)] for k in wanted if int(k) in found]
        return Rows.build(
            from_stored([r[0] for r in order]),
            np.array([np.frombuffer(r[1], dtype=np.float32) for r in order]).reshape(len(order), self.dim),
            centres=[r[2:5] for r in order] if order else None,
            boxes=[json.loads(r[5]) for r in order] if order else None,
            layer=[str(r[6]) for r in order],
            model=[str(r[7]) for r in order],
        )

    def count(self, where: Where | None = None) -> int:
        clauses, params = (where or Where()).sql()
        sql = f"select count(*) from {self._table}" + (" where " + " and ".join(clauses) if clauses else "")
        return int(self._conn().execute(sql, params).fetchone()[0])

    def delete(self, keys: npt.ArrayLike) -> int:
        stored = [int(v) for v in to_stored(np.atleast_1d(np.asarray(keys, dtype=np.uint64)))]
        conn = self._conn()
        with conn:  # counted inside the transaction: vec0's own change counter includes its shadow tables
            before = self.count()
            conn.executemany(f"delete from {self._table} where key = ?", ((k,) for k in stored))
            return before - self.count()

    def drop(self) -> None:
        conn = self._conn()
        with conn:
            conn.execute(f"drop table if exists {self._table}")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
