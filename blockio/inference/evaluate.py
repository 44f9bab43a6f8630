"""Segmentation metrics of a prediction layer against a ground-truth layer.

>>> evaluate("blockio-data", "demo", pred="pred", truth="truth")["adapted_rand_error"]

Both layers are read through the block API in z-slabs; each slab adds its
voxel-pair counts (``np.unique`` of packed ``(truth, pred)`` ids) to a
contingency table, so memory follows the slab and the number of segment
pairs, not the volume. From the table:

- **adapted Rand error** (1 - Rand F-score, alpha 0.5), with its precision and
  recall, as :func:`skimage.metrics.adapted_rand_error` computes them;
- **variation of information**: ``vi_split = H(pred | truth)`` (false
  splits), ``vi_merge = H(truth | pred)`` (false merges), in bits, as
  :func:`skimage.metrics.variation_of_information`.

Voxels with truth label 0 (membrane, unlabelled) are ignored; predicted 0 is
a segment like any other (``ignore_labels=(0,)`` in scikit-image's terms).
The result is stored in the catalog under
``layers[pred]["evaluation"][truth]``.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest

__all__ = ["ContingencyTable", "evaluate", "scores"]

SLAB_VOXELS = 1 << 24
"""Voxels per z-slab read (about 64 MiB of uint32 per layer)."""


class ContingencyTable:
    """Counts of voxel pairs ``(truth id, pred id)``, accumulated slab by slab."""

    def __init__(self) -> None:
        self._keys: list[npt.NDArray[Any]] = []
        self._counts: list[npt.NDArray[np.int64]] = []
        self._pending = 0

    def add(self, truth: npt.NDArray[Any], pred: npt.NDArray[Any]) -> None:
        """Count the voxel pairs of two equally shaped label arrays (truth 0 ignored)."""
        if truth.shape != pred.shape:
            raise InvalidRequest(f"truth and prediction blocks differ in shape: {list(truth.shape)} vs {list(pred.shape)}")
        t = truth.ravel()
        p = pred.ravel()
        keep = t != 0
        t, p = t[keep], p[keep]
        if not len(t):
            return
        if int(t.max()) < 1 << 32 and int(p.max()) < 1 << 32:
            keys = (t.astype(np.uint64) << np.uint64(32)) | p.astype(np.uint64)
            k, c = np.unique(keys, return_counts=True)
            pairs = np.stack([k >> np.uint64(32), k & np.uint64(0xFFFFFFFF)], axis=1)
        else:
            pairs, c = np.unique(np.stack([t.astype(np.uint64), p.astype(np.uint64)], axis=1), axis=0, return_counts=True)
        self._keys.append(pairs)
        self._counts.append(c.astype(np.int64))
        self._pending += len(c)
        if self._pending > 1 << 22:
            self._reduce()

    def _reduce(self) -> None:
        if len(self._keys) > 1:
            keys, inverse = np.unique(np.concatenate(self._keys), axis=0, return_inverse=True)
            counts = np.bincount(inverse.ravel(), weights=np.concatenate(self._counts), minlength=len(keys)).astype(np.int64)
            self._keys, self._counts = [keys], [counts]
        self._pending = len(self._keys[0]) if self._keys else 0

    def table(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
        """``(truth ids, pred ids, counts)``, one entry per distinct pair."""
        self._reduce()
        if not self._keys:
            empty = np.zeros(0, dtype=np.uint64)
            return empty, empty, np.zeros(0, dtype=np.int64)
        keys = self._keys[0]
        return keys[:, 0], keys[:, 1], self._counts[0]


def scores(truth_ids: npt.NDArray[Any], pred_ids: npt.NDArray[Any], counts: npt.NDArray[Any]) -> dict[str, Any]:
    """Adapted Rand error and VI (split, merge) from a sparse contingency table."""
    n = counts.astype(np.float64)
    total = float(n.sum())
    if total == 0:
        raise InvalidRequest("the truth layer has no labelled voxel (all 0): nothing to evaluate")
    _, t_inv = np.unique(truth_ids, return_inverse=True)
    _, p_inv = np.unique(pred_ids, return_inverse=True)
    a = np.bincount(t_inv.ravel(), weights=n)  # truth segment sizes (rows)
    b = np.bincount(p_inv.ravel(), weights=n)  # prediction segment sizes (columns)
    # skimage.metrics.adapted_rand_error, on the same table
    sum_p_ij2 = float(n @ n - total)
    sum_a2 = float(a @ a - total)
    sum_b2 = float(b @ b - total)
    precision = sum_p_ij2 / sum_a2 if sum_a2 else 1.0
    recall = sum_p_ij2 / sum_b2 if sum_b2 else 1.0
    denom = 0.5 * sum_a2 + 0.5 * sum_b2
    are = 1.0 - (sum_p_ij2 / denom if denom else 1.0)
    p = n / total
    pa = a[t_inv.ravel()] / total
    pb = b[p_inv.ravel()] / total
    split = float(-(p * np.log2(p / pa)).sum())
    merge = float(-(p * np.log2(p / pb)).sum())
    return {
        "adapted_rand_error": are,
        "rand_precision": precision,
        "rand_recall": recall,
        "vi_split": max(split, 0.0),
        "vi_merge": max(merge, 0.0),
        "vi": max(split, 0.0) + max(merge, 0.0),
        "voxels": int(total),
        "truth_segments": len(a),
        "pred_segments": len(b),
    }


def evaluate(root: str | os.PathLike[str], dataset_id: str, pred: str, truth: str, *, slab_voxels: int = SLAB_VOXELS, store_result: bool = True) -> dict[str, Any]:
    """Adapted Rand error and variation of information of layer ``pred`` against ``truth``.

    Parameters
    ----------
    root, dataset_id
        The store and the dataset holding both layers.
    pred, truth
        Segmentation layer names, same shape at mip 0.
    slab_voxels
        Voxels per z-slab read at a time (bounds memory).
    store_result
        Record the metrics in the catalog under ``layers[pred]["evaluation"][truth]``.

    Returns
    -------
    dict
        ``adapted_rand_error``, ``rand_precision``, ``rand_recall``,
        ``vi_split``, ``vi_merge``, ``vi`` (bits), ``voxels`` (truth != 0),
        ``truth_segments``, ``pred_segments``, ``ignore`` and ``evaluated``.
    """
    from blockio.store import Store
    from precomputed.catalog import Catalog, now
    from precomputed.ingest import local_root
    from precomputed.storage import is_remote

    root_path: str | os.PathLike[str] = str(root) if is_remote(root) else local_root(root)
    store = Store(root_path, cache_bytes=0)
    layers = store.layers(dataset_id)
    for role, name in (("pred", pred), ("truth", truth)):
        if name not in layers:
            raise InvalidRequest(f"dataset {dataset_id!r} has no layer {name!r} ({role}); layers: {', '.join(sorted(layers))}")
        if layers[name]["type"] != "segmentation":
            raise InvalidRequest(f"layer {name!r} ({role}) is a {layers[name]['type']} layer, not a segmentation")
    bp, bt = store.reader(dataset_id, pred).bounds(0), store.reader(dataset_id, truth).bounds(0)
    if bp != bt:
        raise InvalidRequest(f"layers {pred!r} and {truth!r} have different bounds at mip 0: {bp} vs {bt}")
    nx, ny, nz = bt.size
    slab = max(1, min(nz, slab_voxels // max(1, nx * ny)))
    table = ContingencyTable()
    for z0 in range(bt.start[2], bt.stop[2], slab):
        dz = min(slab, bt.stop[2] - z0)
        offset, size = (bt.start[0], bt.start[1], z0), (nx, ny, dz)
        t = store.read_block(dataset_id, offset, size, layer=truth)
        p = store.read_block(dataset_id, offset, size, layer=pred)
        table.add(t, p)
    result = scores(*table.table())
    result["ignore"] = "truth label 0"
    result["evaluated"] = now()
    if not all(math.isfinite(v) for v in result.values() if isinstance(v, float)):
        raise RuntimeError(f"internal: non-finite metrics {result}")
    if store_result:

        def change(record: dict[str, Any] | None) -> dict[str, Any]:
            if record is None or pred not in record["layers"]:
                raise InvalidRequest(f"layer {pred!r} of {dataset_id!r} vanished while it was evaluated")
            record["layers"][pred].setdefault("evaluation", {})[truth] = result
            return record

        Catalog(root_path).update(dataset_id, change)
    return result
