"""Embedding sets: vectors a model computes per cell or per segment, stored twice and searched.

- :func:`run_embedding` (``blockio embed``): the model blockwise on Dask,
  resumable; the vectors as a Zarr v3 array under ``ROOT/embeddings/<id>/<name>``
  and in a vector index; an entry in the dataset's catalog record.
- :class:`VectorIndex`: one interface over two engines, SQLite + sqlite-vec
  (:class:`SqliteIndex`, embedded, exact) and LanceDB (:class:`LanceIndex`,
  buckets and large sets, an IVF index).
- :class:`EmbeddingSet` (``store.embeddings(dataset, name)``): ``knn`` by
  vector, position or segment, ``vector_at``; answers with positions in
  voxels and nm, distances and review-page links.

Heavy imports (zarr, apsw, lancedb) happen in the modules that need them.
"""

from __future__ import annotations

from typing import Any

from blockio.embeddings.rows import Hit, Rows, Where

__all__ = ["EmbedOptions", "EmbeddingSet", "Hit", "LanceIndex", "Rows", "SqliteIndex", "VectorIndex", "Where", "open_index", "run_embedding"]

_LAZY = {
    "EmbedOptions": "blockio.embeddings.run",
    "run_embedding": "blockio.embeddings.run",
    "EmbeddingSet": "blockio.embeddings.query",
    "VectorIndex": "blockio.embeddings.index",
    "open_index": "blockio.embeddings.index",
    "SqliteIndex": "blockio.embeddings.sqlite_index",
    "LanceIndex": "blockio.embeddings.lance_index",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'blockio.embeddings' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
