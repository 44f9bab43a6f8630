"""What an index holds and answers: rows of vectors with their places, filters, hits.

A *row* is one vector with its key: a cell's linear index (x fastest) or a
segment id, both unsigned 64-bit. SQLite's integers are signed, so every
engine stores ``key - 2**63`` (:func:`to_stored`), which keeps the order
and round-trips ``2**64 - 1``. Each row also has the place it stands for in
(x, y, z) voxels of the set's mip: its ``centre`` (a cell's centre, a
segment's centroid) and its ``box`` ``[x0, y0, z0, x1, y1, z1)``, and the
``layer`` and ``model`` it came from (so a filter can pick them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest

__all__ = ["METRICS", "Hit", "Rows", "Where", "from_stored", "to_stored"]

METRICS = ("l2", "cosine")
"""Distances the engines compute: Euclidean, and 1 - cosine similarity."""

_OFFSET = np.uint64(1 << 63)


def to_stored(keys: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """uint64 keys as the signed integers an engine stores (``key - 2**63``: order kept)."""
    arr = np.asarray(keys, dtype=np.uint64)
    return (arr - _OFFSET).view(np.int64)  # wraps modulo 2**64: 0 -> -2**63, 2**64-1 -> 2**63-1


def from_stored(values: npt.ArrayLike) -> npt.NDArray[np.uint64]:
    """The inverse of :func:`to_stored`."""
    return np.asarray(values, dtype=np.int64).view(np.uint64) + _OFFSET


@dataclass(frozen=True)
class Rows:
    """``n`` rows: keys, vectors and where each one stands.

    Attributes
    ----------
    keys
        uint64 ``[n]``: cell indices or segment ids, unique.
    vectors
        float32 ``[n, D]``.
    centres
        float64 ``[n, 3]``: (x, y, z) voxels of the set's mip.
    boxes
        int64 ``[n, 6]``: ``x0, y0, z0, x1, y1, z1`` voxels (stop exclusive).
    layer, model
        The source layer and the model of every row (str ``[n]``).
    """

    keys: npt.NDArray[np.uint64]
    vectors: npt.NDArray[np.float32]
    centres: npt.NDArray[np.float64]
    boxes: npt.NDArray[np.int64]
    layer: npt.NDArray[np.str_]
    model: npt.NDArray[np.str_]

    @classmethod
    def build(
        cls,
        keys: npt.ArrayLike,
        vectors: npt.ArrayLike,
        *,
        centres: npt.ArrayLike | None = None,
        boxes: npt.ArrayLike | None = None,
        layer: str | Sequence[str] = "image",
        model: str | Sequence[str] = "",
    ) -> Rows:
        """Rows from array-likes; missing centres and boxes are zeros, a str layer/model applies to all rows."""
        k = np.atleast_1d(np.asarray(keys, dtype=np.uint64))
        v = np.asarray(vectors, dtype=np.float32)
        if v.ndim != 2 or v.shape[0] != k.shape[0]:
            raise InvalidRequest(f"vectors must be [n, D] with n = {k.shape[0]} keys, got shape {list(v.shape)}")
        if not np.all(np.isfinite(v)):
            raise InvalidRequest("vectors must be finite (no NaN or infinity)")
        if len(np.unique(k)) != len(k):
            raise InvalidRequest("keys must be unique within one add")
        n = len(k)
        c = np.zeros((n, 3)) if centres is None else np.asarray(centres, dtype=np.float64).reshape(n, 3)
        b = np.zeros((n, 6), dtype=np.int64) if boxes is None else np.asarray(boxes, dtype=np.int64).reshape(n, 6)
        lay = np.full(n, layer) if isinstance(layer, str) else np.asarray(layer, dtype=np.str_)
        mod = np.full(n, model) if isinstance(model, str) else np.asarray(model, dtype=np.str_)
        return cls(k, np.ascontiguousarray(v), c, b, lay.astype(np.str_), mod.astype(np.str_))

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def dim(self) -> int:
        """D, the vectors' length."""
        return int(self.vectors.shape[1])

    def take(self, index: npt.ArrayLike) -> Rows:
        """The rows at ``index`` (positions or a boolean mask)."""
        i = np.asarray(index)
        return Rows(self.keys[i], self.vectors[i], self.centres[i], self.boxes[i], self.layer[i], self.model[i])


@dataclass(frozen=True)
class Where:
    """A filter on rows: every field given must hold.

    Attributes
    ----------
    layer, model
        The row's source layer / model equals this.
    region
        ``((x0, y0, z0), (x1, y1, z1))`` voxels of the set's mip: the row's
        centre lies in ``[start, stop)``.
    """

    layer: str | None = None
    model: str | None = None
    region: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    def __post_init__(self) -> None:
        if self.region is not None:
            start, stop = self.region
            if len(start) != 3 or len(stop) != 3 or any(b <= a for a, b in zip(start, stop)):
                raise InvalidRequest(f"region must be ((x0, y0, z0), (x1, y1, z1)) with x0 < x1, y0 < y1, z0 < z1; got {self.region}")

    @property
    def empty(self) -> bool:
        """Nothing to filter on."""
        return self.layer is None and self.model is None and self.region is None

    def sql(self, quote: Any = None) -> tuple[list[str], list[Any]]:
        """``(clauses, parameters)`` with ``?`` placeholders, on columns layer, model, cx, cy, cz."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.layer is not None:
            clauses.append("layer = ?")
            params.append(self.layer)
        if self.model is not None:
            clauses.append("model = ?")
            params.append(self.model)
        if self.region is not None:
            for axis, a, b in zip("xyz", *self.region):
                clauses.append(f"c{axis} >= ?")
                clauses.append(f"c{axis} < ?")
                params.extend([float(a), float(b)])
        return clauses, params

    def mask(self, rows: Rows) -> npt.NDArray[np.bool_]:
        """Which of ``rows`` pass (the reference the engines are tested against)."""
        keep = np.ones(len(rows), dtype=bool)
        if self.layer is not None:
            keep &= rows.layer == self.layer
        if self.model is not None:
            keep &= rows.model == self.model
        if self.region is not None:
            start, stop = (np.asarray(v, dtype=np.float64) for v in self.region)
            keep &= np.all((rows.centres >= start) & (rows.centres < stop), axis=1)
        return keep


@dataclass(frozen=True)
class Hit:
    """One answer of a k-NN query: a row and its distance to the query."""

    key: int
    distance: float
    centre: tuple[float, float, float]
    box: tuple[int, int, int, int, int, int]
    layer: str
    model: str
    extra: dict[str, Any] = field(default_factory=dict)
