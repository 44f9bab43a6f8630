"""The vector index interface and how a root picks its engine.

Two engines keep the same rows and answer the same queries:

========  ===============================================  ==========================================
engine    where                                            search
========  ===============================================  ==========================================
sqlite    ``ROOT/embeddings/<id>/index.sqlite``: one       exact, in SQLite with the sqlite-vec
          file per dataset, a ``vec0`` table per set        extension (loaded through apsw)
lance     ``ROOT/embeddings/<id>/index.lance/``: a          exact, or an IVF_PQ index with refinement
          LanceDB database per dataset, a table per set     once built (:meth:`LanceIndex.build_ann`)
========  ===============================================  ==========================================

A local root uses ``sqlite`` unless told otherwise; a bucket root (``s3://``,
``gs://``) uses ``lance``, which reads and writes object storage itself;
so do sets past :data:`LANCE_PAST_ROWS` vectors. Keys are unsigned 64-bit
(see :mod:`blockio.embeddings.rows`); adding a key that is there replaces
its row, so a resumed run can add the same rows again.
"""

from __future__ import annotations

import abc
import re

import numpy as np
import numpy.typing as npt

from blockio.embeddings.rows import METRICS, Hit, Rows, Where
from blockio.errors import InvalidRequest

__all__ = ["ENGINES", "LANCE_PAST_ROWS", "VectorIndex", "choose_engine", "index_location", "open_index"]

ENGINES = ("sqlite", "lance")
LANCE_PAST_ROWS = 1_000_000
"""Sets with more rows than this go to LanceDB (an ANN index) rather than an exact SQLite scan."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def check_name(name: str) -> str:
    """An embedding set's name: 1-128 characters of ``A-Z a-z 0-9 . _ -``, not starting with a dot or dash."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(f"invalid embedding set name {name!r}: use 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit")
    return name


class VectorIndex(abc.ABC):
    """One embedding set's rows in one engine.

    Attributes
    ----------
    engine
        ``"sqlite"`` or ``"lance"``.
    name, dim, metric
        The set's name, vector length D and distance (``"l2"`` or ``"cosine"``).
    """

    engine: str

    def __init__(self, name: str, dim: int, metric: str) -> None:
        if metric not in METRICS:
            raise InvalidRequest(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if not isinstance(dim, int) or not 1 <= dim <= 8192:
            raise InvalidRequest(f"dimension must be an integer in 1..8192, got {dim!r}")
        self.name = check_name(name)
        self.dim = dim
        self.metric = metric

    def _check_rows(self, rows: Rows) -> None:
        if len(rows) and rows.dim != self.dim:
            raise InvalidRequest(f"set {self.name!r} holds {self.dim}-d vectors, got {rows.dim}-d")

    def _check_query(self, vector: npt.ArrayLike, k: int) -> npt.NDArray[np.float32]:
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if v.shape[0] != self.dim:
            raise InvalidRequest(f"set {self.name!r} holds {self.dim}-d vectors, the query has {v.shape[0]}")
        if not np.all(np.isfinite(v)):
            raise InvalidRequest("the query vector must be finite")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= 4096:
            raise InvalidRequest(f"k must be an integer in 1..4096, got {k!r}")
        return v

    @abc.abstractmethod
    def add(self, rows: Rows) -> None:
        """Add rows; a key already there has its row replaced."""

    @abc.abstractmethod
    def knn(self, vector: npt.ArrayLike, k: int = 10, where: Where | None = None) -> list[Hit]:
        """The ``k`` rows nearest ``vector`` that pass ``where``, nearest first."""

    @abc.abstractmethod
    def get(self, keys: npt.ArrayLike) -> Rows:
        """The rows of ``keys`` that exist, in the order asked."""

    @abc.abstractmethod
    def count(self, where: Where | None = None) -> int:
        """How many rows (that pass ``where``)."""

    @abc.abstractmethod
    def delete(self, keys: npt.ArrayLike) -> int:
        """Remove the rows of ``keys``; returns how many there were."""

    @abc.abstractmethod
    def drop(self) -> None:
        """Remove the whole set from the index."""

    def version(self) -> str:
        """The engine's library version, for the catalog."""
        return "unknown"

    def close(self) -> None:  # noqa: B027 - an engine without connections has nothing to release
        """Release connections (the index can be opened again)."""


def index_location(root: str, dataset: str, engine: str) -> str:
    """Where a dataset's index of ``engine`` lives, relative to the root."""
    return f"embeddings/{dataset}/index.sqlite" if engine == "sqlite" else f"embeddings/{dataset}/index.lance"


def choose_engine(root: str, rows: int = 0, engine: str | None = None) -> str:
    """The engine for a set: ``engine`` if given; ``lance`` on a bucket root or past :data:`LANCE_PAST_ROWS`; else ``sqlite``."""
    from precomputed.storage import is_remote

    if engine is not None:
        if engine not in ENGINES:
            raise InvalidRequest(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        if engine == "sqlite" and is_remote(root):
            raise InvalidRequest(f"the sqlite engine needs a local root; {root} is a bucket: use engine 'lance'")
        return engine
    return "lance" if is_remote(root) or rows > LANCE_PAST_ROWS else "sqlite"


def open_index(root: str, dataset: str, name: str, *, dim: int, metric: str = "l2", engine: str = "sqlite") -> VectorIndex:
    """The index of set ``name`` of ``dataset`` under ``root`` (a folder or a bucket URL), created if missing."""
    from precomputed.storage import open_root

    storage = open_root(root)
    where = index_location(root, dataset, engine)
    if engine == "sqlite":
        from blockio.embeddings.sqlite_index import SqliteIndex

        folder = storage.local_path(where)
        if folder is None:
            raise InvalidRequest(f"the sqlite engine needs a local root; {root} is a bucket: use engine 'lance'")
        return SqliteIndex(folder, name, dim=dim, metric=metric)
    if engine == "lance":
        from blockio.embeddings.lance_index import LanceIndex

        folder = storage.local_path(where)
        return LanceIndex(str(folder) if folder is not None else f"{storage.url}/{storage.join(where)}", name, dim=dim, metric=metric)
    raise InvalidRequest(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
