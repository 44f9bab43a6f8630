"""The scale-out engine: LanceDB, for bucket roots and sets past a million vectors.

A dataset's index is a LanceDB database at ``ROOT/embeddings/<id>/index.lance``
(a folder, or a prefix of the root's bucket, which LanceDB reads and writes
itself); each set is a table of the same columns as the SQLite engine's:
``key`` (``key - 2**63``), ``vector``, ``layer``, ``model``, ``cx, cy, cz`` and
``box``. A query is an exact scan until :meth:`LanceIndex.build_ann` builds
an IVF index (IVF_FLAT by default: the vectors themselves in each partition,
so the only approximation is which partitions are probed); later adds are
searched too, exactly, until the index is rebuilt.

On S3 the endpoint comes from the root URL (``s3://http://host:port/...``) or
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, the keys from the AWS
variables, as for every other reader of the root.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.embeddings.index import VectorIndex
from blockio.embeddings.rows import Hit, Rows, Where, from_stored, to_stored

__all__ = ["LanceIndex", "storage_options"]

DEFAULT_NPROBES = 10
_QUOTE = str.maketrans({"'": "''"})


def storage_options(uri: str) -> tuple[str, dict[str, str]]:
    """``(uri, options)`` LanceDB opens: the endpoint of an ``s3://`` URL moved into the options."""
    if not uri.startswith("s3://"):
        return uri, {}
    from precomputed.storage.endpoints import split_endpoint

    endpoint, rest = split_endpoint(uri)
    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    options: dict[str, str] = {}
    if endpoint:
        options["aws_endpoint"] = endpoint
        options["allow_http"] = "true" if endpoint.startswith("http://") else "false"
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        options["aws_region"] = region
    return f"s3://{rest}", options


def _key_in(stored: npt.NDArray[np.int64]) -> str:
    # -2**63 cannot be written as a literal (the parser negates 2**63, which overflows)
    return "key IN (" + ",".join("(-9223372036854775807 - 1)" if v == -(1 << 63) else str(int(v)) for v in stored) + ")"


class LanceIndex(VectorIndex):
    """A set in a dataset's LanceDB database (the table is created on first add).

    Parameters
    ----------
    uri
        The database: a folder or ``s3://`` / ``gs://`` URL.
    """

    engine = "lance"

    def __init__(self, uri: str, name: str, *, dim: int, metric: str = "l2") -> None:
        import lancedb

        super().__init__(name, dim, metric)
        self.uri, options = storage_options(uri)
        self._db = lancedb.connect(self.uri, storage_options=options or None)
        self.nprobes = DEFAULT_NPROBES
        self.refine_factor: int | None = None
        self._table_handle: Any = None

    def _schema(self) -> Any:
        import pyarrow as pa

        return pa.schema(
            [
                pa.field("key", pa.int64()),
                pa.field("vector", pa.list_(pa.float32(), self.dim)),
                pa.field("layer", pa.string()),
                pa.field("model", pa.string()),
                pa.field("cx", pa.float64()),
                pa.field("cy", pa.float64()),
                pa.field("cz", pa.float64()),
                pa.field("box", pa.list_(pa.int64(), 6)),
            ]
        )

    def _table(self, create: bool = False) -> Any:
        if self._table_handle is None:
            try:
                self._table_handle = self._db.open_table(self.name)
            except (ValueError, FileNotFoundError):  # LanceDB's "table not found"
                if not create:
                    return None
                self._table_handle = self._db.create_table(self.name, schema=self._schema(), exist_ok=True)
            field = self._table_handle.schema.field("vector")
            if field.type.list_size != self.dim:
                from blockio.errors import Conflict

                raise Conflict(f"set {self.name!r} in {self.uri} holds {field.type.list_size}-d vectors, not {self.dim}-d")
        return self._table_handle

    def version(self) -> str:
        import lancedb

        return f"lancedb {lancedb.__version__}"

    def _arrow(self, rows: Rows) -> Any:
        import pyarrow as pa

        n = len(rows)
        return pa.table(
            {
                "key": pa.array(to_stored(rows.keys)),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows.vectors.reshape(-1)), self.dim),
                "layer": pa.array(rows.layer.tolist(), pa.string()),
                "model": pa.array(rows.model.tolist(), pa.string()),
                "cx": pa.array(rows.centres[:, 0]),
                "cy": pa.array(rows.centres[:, 1]),
                "cz": pa.array(rows.centres[:, 2]),
                "box": pa.FixedSizeListArray.from_arrays(pa.array(rows.boxes.reshape(-1), pa.int64()), 6) if n else pa.array([], pa.list_(pa.int64(), 6)),
            },
            schema=self._schema(),
        )

    def add(self, rows: Rows) -> None:
        self._check_rows(rows)
        if not len(rows):
            return
        table = self._table(create=True)
        data = self._arrow(rows)
        if table.count_rows() == 0:
            table.add(data)
        else:  # an upsert on the key: a resumed run may add the same rows again
            table.merge_insert("key").when_matched_update_all().when_not_matched_insert_all().execute(data)

    @staticmethod
    def _filter(where: Where | None) -> str | None:
        clauses, params = (where or Where()).sql()
        if not clauses:
            return None
        parts = []
        for clause, value in zip(clauses, params):
            literal = f"'{value.translate(_QUOTE)}'" if isinstance(value, str) else repr(float(value))
            parts.append(clause.replace("?", literal))
        return " AND ".join(parts)

    def knn(self, vector: npt.ArrayLike, k: int = 10, where: Where | None = None) -> list[Hit]:
        q = self._check_query(vector, k)
        table = self._table()
        if table is None:
            return []
        search = table.search(q, vector_column_name="vector").distance_type(self.metric).limit(int(k)).nprobes(self.nprobes)
        if self.refine_factor:
            search = search.refine_factor(self.refine_factor)
        condition = self._filter(where)
        if condition:
            search = search.where(condition, prefilter=True)
        result = search.select(["key", "cx", "cy", "cz", "box", "layer", "model", "_distance"]).to_arrow().to_pydict()
        keys = from_stored(result["key"]) if result["key"] else np.zeros(0, np.uint64)
        hits = [
            Hit(int(key), float(d), (cx, cy, cz), tuple(int(v) for v in box), layer, model)  # type: ignore[arg-type]
            for key, d, cx, cy, cz, box, layer, model in zip(keys, result["_distance"], result["cx"], result["cy"], result["cz"], result["box"], result["layer"], result["model"])
        ]
        if self.metric == "l2":  # LanceDB reports squared Euclidean distances; SQLite and numpy the distance itself
            hits = [Hit(h.key, float(np.sqrt(max(h.distance, 0.0))), h.centre, h.box, h.layer, h.model) for h in hits]
        return sorted(hits, key=lambda h: h.distance)

    def _rows(self, condition: str | None) -> Rows:
        table = self._table()
        if table is None:
            return Rows.build([], np.zeros((0, self.dim)))
        query = table.search()
        if condition:
            query = query.where(condition)
        data = query.limit(None).to_arrow().to_pydict()
        n = len(data["key"])
        return Rows.build(
            from_stored(data["key"]) if n else [],
            np.asarray(data["vector"], dtype=np.float32).reshape(n, self.dim),
            centres=np.column_stack([data["cx"], data["cy"], data["cz"]]) if n else None,
            boxes=np.asarray(data["box"], dtype=np.int64) if n else None,
            layer=[str(v) for v in data["layer"]],
            model=[str(v) for v in data["model"]],
        )

    def get(self, keys: npt.ArrayLike) -> Rows:
        wanted = to_stored(np.atleast_1d(np.asarray(keys, dtype=np.uint64)))
        if not len(wanted):
            return Rows.build([], np.zeros((0, self.dim)))
        parts = [self._rows(_key_in(wanted[lo : lo + 1000])) for lo in range(0, len(wanted), 1000)]
        found = {int(k): (p, i) for p in parts for i, k in enumerate(to_stored(p.keys))}
        order = [found[int(k)] for k in wanted if int(k) in found]
        if not order:
            return Rows.build([], np.zeros((0, self.dim)))
        picked = [p.take(np.array([i])) for p, i in order]
        return Rows(*(np.concatenate([getattr(r, f) for r in picked]) for f in ("keys", "vectors", "centres", "boxes", "layer", "model")))

    def count(self, where: Where | None = None) -> int:
        table = self._table()
        if table is None:
            return 0
        return int(table.count_rows(self._filter(where)))

    def delete(self, keys: npt.ArrayLike) -> int:
        table = self._table()
        stored = to_stored(np.atleast_1d(np.asarray(keys, dtype=np.uint64)))
        if table is None or not len(stored):
            return 0
        before = table.count_rows()
        for lo in range(0, len(stored), 1000):
            table.delete(_key_in(stored[lo : lo + 1000]))
        return int(before - table.count_rows())

    def drop(self) -> None:
        if self._table() is not None:
            self._db.drop_table(self.name)
        self._table_handle = None

    def build_ann(self, *, partitions: int | None = None, kind: str = "ivf_flat") -> None:
        """Build the approximate index: IVF_FLAT (default) or IVF_PQ, about sqrt(n) partitions."""
        from lancedb.index import IvfFlat, IvfPq

        table = self._table()
        if table is None:
            return
        n = table.count_rows()
        parts = partitions or max(1, min(4096, int(np.sqrt(n))))
        if kind == "ivf_pq":
            config: Any = IvfPq(distance_type=self.metric, num_partitions=parts, num_sub_vectors=max(1, self.dim // 4))  # type: ignore[arg-type]
            self.refine_factor = self.refine_factor or 10
        else:
            config = IvfFlat(distance_type=self.metric, num_partitions=parts)  # type: ignore[arg-type]
        table.create_index("vector", config=config, replace=True)

    def has_ann(self) -> bool:
        """Whether the table has a vector index."""
        table = self._table()
        return bool(table is not None and any("vector" in list(ix.columns) for ix in table.list_indices()))

    def describe(self) -> dict[str, Any]:
        """The table's row count and index, for the catalog."""
        return {"rows": self.count(), "ann": self.has_ann(), "nprobes": self.nprobes, "box_encoding": json.dumps("x0,y0,z0,x1,y1,z1")}
