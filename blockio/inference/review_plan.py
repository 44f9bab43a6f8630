"""Choosing what a reviewer should look at: the items of a review queue.

>>> plan = plan_review(store, "demo", pred="pred", strategy="disagreement", truth="truth", size=20)

Strategies, each over a segmentation layer ``pred`` (A):

``largest``
    A's largest segments, from its segment properties (voxel counts at mip 0).
``disagreement``
    Where A and another layer (B: ``vs``, another prediction, or ``truth``)
    disagree, from their contingency table
    (:class:`blockio.inference.evaluate.ContingencyTable`, B's label 0
    ignored): a segment of A that B **splits** (two or more B segments each
    hold at least ``min_fraction`` of it), or segments of A that B **merges**
    (one B segment holds at least ``min_fraction`` of each). Ranked by the
    voxels involved: A's voxels outside its largest B part for a split, B's
    voxels outside its largest A part for a merge.
``low-confidence``
    Needs a score layer: the model's per-voxel confidence, an image layer
    beside the prediction. No blockio command writes one today
    (``blockio predict`` blends the model's scores and keeps only the labels),
    so this strategy refuses, saying so.
``random``
    Segments of A drawn uniformly without replacement, seeded.

Every item names its layer, its segment(s) of A, a place to centre the view
on (one of the segment's own voxels near its centre, (x, y, z) voxels at mip
0: :func:`blockio.inference.segment_places.segment_places`), the voxels
involved and why it was chosen in words.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest

from .evaluate import ContingencyTable
from .segment_places import SLAB_VOXELS, segment_places, slabs

__all__ = ["LOW_CONFIDENCE_NEEDS", "STRATEGIES", "ReviewPlan", "plan_review"]

STRATEGIES = ("largest", "disagreement", "low-confidence", "random")
LOW_CONFIDENCE_NEEDS = (
    "the low-confidence strategy needs a score layer: the model's per-voxel confidence (float32 in [0, 1]) as an image layer "
    "beside the prediction; no blockio command writes one today (blockio predict blends the model's scores and keeps only "
    "the labels), so choose largest, disagreement or random"
)
_MAX_SIZE = 100_000
_MAX_RELATED = 8


@dataclass(frozen=True, kw_only=True)
class ReviewPlan:
    """What a queue holds: the dataset, how its items were chosen, and the items, most important first."""

    dataset: str
    layer: str
    strategy: str
    other: str | None
    items: list[dict[str, Any]] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The plan as plain JSON (what a queue stores)."""
        return {"dataset": self.dataset, "layer": self.layer, "strategy": self.strategy, "other": self.other, "parameters": self.parameters, "items": self.items}


def _properties(store: Any, dataset: str, layer: str) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64]]:
    """Ids and voxel counts from the layer's ``segment_properties/info``."""
    from precomputed.ingest import local_root

    meta = store.layers(dataset)[layer]
    folder = meta.get("segment_properties")
    if not folder:
        raise InvalidRequest(f"layer {layer!r} of {dataset!r} has no segment properties (voxel counts); rewrite it with blockio predict or write_segmentation")
    path = os.path.join(local_root(store.root), meta["path"], folder, "info")
    try:
        with open(path, encoding="utf-8") as f:
            inline = json.load(f)["inline"]
        ids = np.asarray([int(i) for i in inline["ids"]], dtype=np.uint64)
        voxels = next(p for p in inline["properties"] if p.get("id") == "voxels")
        counts = np.asarray(voxels["values"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as exc:
        raise InvalidRequest(f"the segment properties of layer {layer!r} of {dataset!r} cannot be read ({exc.__class__.__name__}); rewrite the layer") from exc
    if len(ids) != len(counts):
        raise InvalidRequest(f"the segment properties of layer {layer!r} of {dataset!r} list {len(ids)} ids but {len(counts)} voxel counts")
    return ids, counts


def _segment_items(ids: list[int], voxels: list[int], reasons: list[str], layer: str) -> list[dict[str, Any]]:
    return [{"layer": layer, "segments": [i], "voxels": v, "reason": r} for i, v, r in zip(ids, voxels, reasons)]


def _largest(store: Any, dataset: str, layer: str, size: int) -> list[dict[str, Any]]:
    ids, counts = _properties(store, dataset, layer)
    order = np.argsort(-counts, kind="stable")[:size]
    chosen = [int(ids[i]) for i in order]
    voxels = [int(counts[i]) for i in order]
    reasons = [f"rank {rank + 1} by size: {v} voxels" for rank, v in enumerate(voxels)]
    return _segment_items(chosen, voxels, reasons, layer)


def _random(store: Any, dataset: str, layer: str, size: int, seed: int) -> list[dict[str, Any]]:
    ids, counts = _properties(store, dataset, layer)
    picks = np.random.default_rng(seed).choice(len(ids), size=min(size, len(ids)), replace=False) if len(ids) else np.zeros(0, dtype=np.int64)
    chosen = [int(ids[i]) for i in picks]
    voxels = [int(counts[i]) for i in picks]
    return _segment_items(chosen, voxels, [f"drawn at random (seed {seed})"] * len(chosen), layer)


def _contingency(store: Any, dataset: str, pred: str, other: str, slab_voxels: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """``(ids of other, ids of pred, voxels)`` of every pair, ``other``'s 0 left out."""
    bp, bo = store.reader(dataset, pred).bounds(0), store.reader(dataset, other).bounds(0)
    if bp != bo:
        raise InvalidRequest(f"layers {pred!r} and {other!r} have different bounds at mip 0: {bp} vs {bo}")
    table = ContingencyTable()
    for (_offset, a), (_same, b) in zip(slabs(store, dataset, pred, slab_voxels=slab_voxels), slabs(store, dataset, other, slab_voxels=slab_voxels)):
        table.add(b, a)
    return table.table()


def _disagreement(store: Any, dataset: str, pred: str, other: str, *, min_fraction: float, slab_voxels: int) -> list[dict[str, Any]]:
    b_ids, a_ids, n = _contingency(store, dataset, pred, other, slab_voxels)
    keep = a_ids != 0
    b_ids, a_ids, n = b_ids[keep], a_ids[keep], n[keep]
    a_unique, a_inv = np.unique(a_ids, return_inverse=True)
    b_unique, b_inv = np.unique(b_ids, return_inverse=True)
    a_size = np.bincount(a_inv, weights=n)
    b_size = np.bincount(b_inv, weights=n)
    significant = n >= min_fraction * a_size[a_inv]
    items: list[dict[str, Any]] = []
    for groups, sizes, uniques, kind in ((a_inv, a_size, a_unique, "split"), (b_inv, b_size, b_unique, "merge")):
        order = np.lexsort((-n, groups))  # by group, the largest overlap first
        bounds = np.searchsorted(groups[order], np.arange(len(sizes) + 1))
        parts_count = np.bincount(groups[significant], minlength=len(sizes))
        for g in np.flatnonzero(parts_count >= 2):
            rows = order[bounds[g] : bounds[g + 1]]
            rows = rows[significant[rows]]
            involved = int(sizes[g] - n[rows].max())
            parts = [int(a_ids[r] if kind == "merge" else b_ids[r]) for r in rows]
            if kind == "split":
                a, others = [int(uniques[g])], parts[:_MAX_RELATED]
                reason = f"split in {other} into {len(parts)} segments ({', '.join(map(str, others))}): {involved} voxels outside the largest part"
            else:
                a, others = parts[:_MAX_RELATED], [int(uniques[g])]
                reason = f"{len(parts)} segments ({', '.join(map(str, a))}) merged in {other} segment {others[0]}: {involved} voxels outside the largest part"
            items.append({"layer": pred, "segments": a, "voxels": involved, "reason": reason, "other": {"layer": other, "segments": others}, "kind": kind})
    items.sort(key=lambda item: (-item["voxels"], item["kind"], item["segments"][0]))
    return items


def plan_review(
    store: Any,
    dataset: str,
    *,
    pred: str,
    strategy: str,
    vs: str | None = None,
    truth: str | None = None,
    size: int = 20,
    seed: int = 0,
    min_fraction: float = 0.1,
    slab_voxels: int = SLAB_VOXELS,
) -> ReviewPlan:
    """The items of a review queue over segmentation layer ``pred`` of ``dataset``.

    Parameters
    ----------
    store
        A :class:`blockio.store.Store` on a local root.
    pred
        The segmentation layer reviewed (A).
    strategy
        One of :data:`STRATEGIES` (see the module docstring).
    vs, truth
        The layer A is compared with (``disagreement`` needs one of the two).
    size
        At most this many items.
    seed
        The draw of ``random``.
    min_fraction
        ``disagreement``: the share of an A segment a part must hold to count.

    Raises
    ------
    InvalidRequest
        An unknown strategy, a missing or non-segmentation layer, a strategy
        without what it needs (``low-confidence`` always: see :data:`LOW_CONFIDENCE_NEEDS`).
    """
    if strategy not in STRATEGIES:
        raise InvalidRequest(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= _MAX_SIZE:
        raise InvalidRequest(f"size must be an integer from 1 to {_MAX_SIZE}, got {size!r}")
    if not 0 < min_fraction <= 0.5:
        raise InvalidRequest(f"min_fraction must be in (0, 0.5], got {min_fraction!r}")
    if vs is not None and truth is not None:
        raise InvalidRequest("give --vs or --truth, not both")
    other = vs if vs is not None else truth
    layers = store.layers(dataset)
    for role, name in (("pred", pred), ("vs" if vs is not None else "truth", other)):
        if name is None:
            continue
        if name not in layers:
            raise InvalidRequest(f"dataset {dataset!r} has no layer {name!r} ({role}); layers: {', '.join(sorted(layers))}")
        if layers[name].get("type") != "segmentation":
            raise InvalidRequest(f"layer {name!r} ({role}) is a {layers[name].get('type')} layer, not a segmentation")
    if strategy == "low-confidence":
        raise InvalidRequest(LOW_CONFIDENCE_NEEDS)
    if strategy == "disagreement":
        if other is None:
            raise InvalidRequest("the disagreement strategy compares two layers: give --vs LAYER (another prediction) or --truth LAYER")
        items = _disagreement(store, dataset, pred, other, min_fraction=min_fraction, slab_voxels=slab_voxels)[:size]
    elif strategy == "largest":
        items = _largest(store, dataset, pred, size)
    else:
        items = _random(store, dataset, pred, size, seed)
    record = store.info(dataset)
    voxel_size = tuple(float(v) for v in record["voxel_size"])
    places = segment_places(store, dataset, pred, {s for item in items for s in item["segments"][:1]}, voxel_size=voxel_size, slab_voxels=slab_voxels)  # type: ignore[arg-type]
    for item in items:
        item["segment"] = item["segments"][0]
        item["position"] = list(places.get(item["segment"], ()))
        item.setdefault("kind", strategy)
    located = [item for item in items if item["position"]]
    parameters: dict[str, Any] = {"size": size}
    if strategy == "random":
        parameters["seed"] = seed
    if strategy == "disagreement":
        parameters["min_fraction"] = min_fraction
    return ReviewPlan(dataset=dataset, layer=pred, strategy=strategy, other=other if strategy == "disagreement" else None, items=located, parameters=parameters)
