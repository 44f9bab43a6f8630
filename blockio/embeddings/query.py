"""Queries on one embedding set: ``store.embeddings(dataset, name)``.

>>> sims = store.embeddings("demo", "features")
>>> answer = sims.knn(position=(200, 310, 40), k=10, where={"region": ((0, 0, 0), (512, 512, 64))})
>>> answer["results"][0]["position"]["nm"], answer["results"][0]["link"]

Positions given to and returned by a set are (x, y, z) voxels of mip 0 (as
Neuroglancer shows them), whatever the set's mip; answers give them in nm as
well. Each result carries a link to the review page's view of the dataset
centred there (``/view/<id>?layout=overlay[&pred=<segments>]#!{"position": ...}``:
the page takes the position from its URL fragment).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.embeddings.index import VectorIndex, open_index
from blockio.embeddings.records import set_entry, stale_reasons
from blockio.embeddings.rows import Hit, Where
from blockio.errors import InvalidRequest, OutOfBounds

__all__ = ["EmbeddingSet", "view_link"]


def view_link(dataset: str, position: Sequence[float], *, segments: str | None = None, base: str = "") -> str:
    """The review page's view of ``dataset`` centred on ``position`` (mip-0 voxels, x, y, z)."""
    query = {"layout": "overlay", **({"pred": segments} if segments else {})}
    centre = [float(np.floor(v)) + 0.5 for v in position]  # the voxel's centre, as the page opens it
    fragment = urllib.parse.quote(json.dumps({"position": centre}, separators=(",", ":")), safe="~@$&()*!+=:;,.?/'")
    return f"{base.rstrip('/')}/view/{urllib.parse.quote(dataset)}?{urllib.parse.urlencode(query)}#!{fragment}"


def _where(value: Where | Mapping[str, Any] | None) -> Where:
    if value is None or isinstance(value, Where):
        return value or Where()
    unknown = sorted(set(value) - {"layer", "model", "region"})
    if unknown:
        raise InvalidRequest(f"unknown filters {', '.join(unknown)}: a filter has layer, model, region")
    region = value.get("region")
    if region is not None:
        try:
            start, stop = (tuple(float(v) for v in corner) for corner in region)
        except (TypeError, ValueError):
            raise InvalidRequest(f"region must be ((x0, y0, z0), (x1, y1, z1)), got {region!r}") from None
        region = (start, stop)
    return Where(layer=value.get("layer"), model=value.get("model"), region=region)  # type: ignore[arg-type]


class EmbeddingSet:
    """One catalogued set of a dataset: its entry, its index and its queries.

    Attributes
    ----------
    entry
        The set's catalog entry (see :mod:`blockio.embeddings.records`).
    stale
        Why the set no longer matches its inputs (empty when current).
    """

    def __init__(self, store: Any, dataset: str, name: str) -> None:
        self.store = store
        self.dataset = dataset
        self.name = name
        self.record = store.info(dataset)
        self.entry = set_entry(self.record, name)
        self.stale = stale_reasons(self.record, self.entry)
        self._index: VectorIndex | None = None
        vs0 = np.asarray(self.record["mips"][0]["voxel_size"], dtype=np.float64)
        self._vs0 = vs0
        self._to_mip = vs0 / np.asarray(self.entry["voxel_size"], dtype=np.float64)  # mip voxels per mip-0 voxel

    @property
    def index(self) -> VectorIndex:
        """The set's vector index (opened on first use)."""
        if self._index is None:
            root = str(self.store.root)
            info = self.entry["index"]
            self._index = open_index(root, self.dataset, self.name, dim=int(self.entry["dimension"]), metric=self.entry["metric"], engine=info["engine"])
        return self._index

    @property
    def granularity(self) -> str:
        return str(self.entry["granularity"])

    def _check_position(self, position: Sequence[float]) -> npt.NDArray[np.float64]:
        try:
            pos = np.asarray([float(v) for v in position], dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidRequest(f"position must be (x, y, z) voxels, got {position!r}") from None
        shape = np.asarray(self.record["shape"])
        if pos.shape != (3,) or not np.all(np.isfinite(pos)) or np.any(pos < 0) or np.any(pos >= shape):
            raise OutOfBounds(f"position {list(position)} (x, y, z) is outside the volume [0, {list(self.record['shape'])}) at mip 0")
        return pos

    def key_at(self, position: Sequence[float]) -> int:
        """The key of the cell (or the segment id) at ``position`` (mip-0 voxels); 0 for background in a segment set."""
        pos = self._check_position(position)
        if self.granularity == "segment":
            segments = self.entry["input"]["segments"]
            at = np.floor(pos).astype(int)
            value = self.store.read_block(self.dataset, tuple(int(v) for v in at), (1, 1, 1), layer=segments)
            return int(np.asarray(value).reshape(-1)[0])
        mip_pos = np.floor(pos * self._to_mip).astype(np.int64)
        cell = np.asarray(self.entry["cell"]["voxels"])
        nx, ny, _ = self.entry["grid"]
        i, j, k = (mip_pos // cell).tolist()
        return int(i + nx * (j + ny * k))

    def vector_at(self, position: Sequence[float]) -> npt.NDArray[np.float32]:
        """The vector of the cell (or segment) at ``position`` (mip-0 voxels, x, y, z)."""
        key = self.key_at(position)
        rows = self.index.get([key])
        if not len(rows):
            what = "background (segment 0)" if self.granularity == "segment" and key == 0 else f"key {key}"
            raise InvalidRequest(f"set {self.name!r} has no vector at {list(position)}: {what}")
        return np.asarray(rows.vectors[0], dtype=np.float32)

    def vector_of(self, segment: int) -> npt.NDArray[np.float32]:
        """The vector of one segment id (segment sets) or cell key (cell sets)."""
        try:
            key = int(segment)
        except (TypeError, ValueError):
            raise InvalidRequest(f"segment must be an integer id, got {segment!r}") from None
        if not 0 <= key < 1 << 64:
            raise InvalidRequest(f"segment ids are 0..2**64-1, got {key}")
        rows = self.index.get([key])
        if not len(rows):
            raise InvalidRequest(f"set {self.name!r} has no vector for {'segment' if self.granularity == 'segment' else 'cell'} {key}")
        return np.asarray(rows.vectors[0], dtype=np.float32)

    def knn(
        self,
        vector: npt.ArrayLike | None = None,
        *,
        position: Sequence[float] | None = None,
        segment: int | None = None,
        k: int = 10,
        where: Where | Mapping[str, Any] | None = None,
        link_base: str = "",
    ) -> dict[str, Any]:
        """The ``k`` nearest rows to a vector, the vector at a position, or a segment's vector.

        Parameters
        ----------
        vector, position, segment
            Exactly one: a D-vector, (x, y, z) mip-0 voxels, or a segment id (the
            query's own row is left out of the answer for the last two).
        where
            A :class:`Where` or ``{"layer", "model", "region": ((x0, y0, z0), (x1, y1, z1))}``
            (region in mip-0 voxels; a row's centre must lie inside).
        link_base
            ``http://host`` to make the links absolute (default: relative).

        Returns
        -------
        dict
            ``{"dataset", "name", "granularity", "metric", "query", "stale", "results": [...]}``;
            a result has ``rank``, ``key`` (and ``segment`` or ``cell``), ``distance``,
            ``position {voxels, nm}``, ``box {voxels: [x0, y0, z0, x1, y1, z1]}``, ``layer``, ``model``, ``link``.
        """
        given = [name for name, value in (("vector", vector), ("position", position), ("segment", segment)) if value is not None]
        if len(given) != 1:
            raise InvalidRequest(f"give exactly one of vector, position, segment (got {', '.join(given) or 'none'})")
        query: dict[str, Any] = {}
        own: int | None = None
        if position is not None:
            own = self.key_at(position)
            q = self.vector_at(position)
            query = {"position": [float(v) for v in position], "key": str(own)}
        elif segment is not None:
            q = self.vector_of(segment)
            own = int(segment)
            query = {"segment": str(own)}
        else:
            q = np.asarray(vector, dtype=np.float32)
            query = {"vector": [float(v) for v in q.reshape(-1)]}
        filt = _where(where)
        hits = [h for h in self.index.knn(q, k + (1 if own is not None else 0), filt) if h.key != own][:k]
        return {
            "dataset": self.dataset,
            "name": self.name,
            "granularity": self.granularity,
            "metric": self.entry["metric"],
            "query": query,
            "stale": self.stale,
            "results": [self._result(rank, hit, link_base) for rank, hit in enumerate(hits, start=1)],
        }

    def _result(self, rank: int, hit: Hit, base: str) -> dict[str, Any]:
        centre = [float(v) for v in hit.centre]
        out: dict[str, Any] = {
            "rank": rank,
            "key": str(hit.key),  # a string: JSON numbers lose ids past 2**53
            "distance": float(hit.distance),
            "position": {"voxels": centre, "nm": [float(c * v) for c, v in zip(centre, self._vs0)]},
            "box": {"voxels": [int(v) for v in hit.box]},
            "layer": hit.layer,
            "model": hit.model,
            "link": view_link(self.dataset, centre, segments=self.entry["input"].get("segments"), base=base),
        }
        if self.granularity == "segment":
            out["segment"] = str(hit.key)
        else:
            nx, ny, _ = self.entry["grid"]
            out["cell"] = [hit.key % nx, (hit.key // nx) % ny, hit.key // (nx * ny)]
        return out

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
