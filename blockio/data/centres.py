"""Where random patches are centred: by label class, or inside a mask.

A :class:`CentreIndex` holds, for one dataset, the voxels of a coarse mip
(:func:`index_mip`: the finest with at most :data:`INDEX_VOXELS` voxels) that
a patch may be centred on, grouped by class:

- ``balance="class"``: every voxel of the label layer, its class being
  ``class_map[id]`` if given, else the ``label`` of the segment in the
  layer's segment properties (the class name its writer gave, else
  ``segment N``), and ``"background"`` for id 0. Each voxel weighs
  ``1 / f(class)``, ``f`` the class's voxel count (from the segment
  properties' mip-0 ``voxels`` where the layer has them, else counted at the
  index mip), so every class is drawn about equally often however rare;
- ``mask=LAYER``: the voxels where that layer is non-zero, one class;
- both: the label voxels inside the mask.

A draw (:meth:`CentreIndex.draw`) takes a class, a voxel of it and a uniform
point inside that voxel, all from the item's generator, so items stay a
function of ``(seed, epoch, i)`` whatever the number of workers. The index is
built once in the constructing process and pickled with the dataset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest
from precomputed.geometry import xyz_float

__all__ = ["INDEX_VOXELS", "CentreIndex", "centre_index", "index_mip", "segment_classes"]

INDEX_VOXELS = 1 << 21
"""Largest index a dataset reads (voxels of one coarse mip); the finest mip within it is used."""
BACKGROUND = "background"


def index_mip(mips: list[dict[str, Any]]) -> int:
    """The finest mip with at most :data:`INDEX_VOXELS` voxels (the coarsest when none is that small)."""
    for level, mip in enumerate(mips):
        if math.prod(int(n) for n in mip["shape"]) <= INDEX_VOXELS:
            return level
    return len(mips) - 1


def segment_classes(store: Any, record: dict[str, Any], layer: str) -> tuple[dict[int, str], dict[int, int]]:
    """``({id: class name}, {id: mip-0 voxels})`` from a local layer's segment properties (empty when it has none)."""
    meta = record["layers"][layer]
    root = getattr(store, "root", None)
    folder = meta.get("segment_properties")
    if not isinstance(root, Path) or not folder:
        return {}, {}
    path = root / meta["path"] / folder / "info"
    try:
        inline = json.loads(path.read_text(encoding="utf-8"))["inline"]
        ids = [int(i) for i in inline["ids"]]
        props = {p["id"]: p["values"] for p in inline["properties"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"dataset {record['id']!r}, layer {layer!r}: unreadable segment properties {path.name}: {exc}") from exc
    names = {i: str(v) for i, v in zip(ids, props.get("label", []))}
    voxels = {i: int(v) for i, v in zip(ids, props.get("voxels", []))}
    return names, voxels


@dataclass(frozen=True)
class CentreIndex:
    """Candidate patch centres of one dataset: voxels of mip ``mip`` (``voxel_size`` nm) by class."""

    mip: int
    voxel_size: tuple[float, float, float]
    start: tuple[int, int, int]  # (x, y, z) of the index array's first voxel
    shape_zyx: tuple[int, int, int]
    classes: tuple[str, ...]
    voxels: tuple[npt.NDArray[np.int64], ...]  # flat [z, y, x] indices, per class
    cumulative: npt.NDArray[np.float64]  # of picking each class

    @classmethod
    def build(
        cls,
        mip: int,
        voxel_size: tuple[float, float, float],
        start: tuple[int, int, int],
        labels: npt.NDArray[Any] | None,
        mask: npt.NDArray[Any] | None,
        *,
        class_map: Mapping[int, str] | None = None,
        names: Mapping[int, str] | None = None,
        frequencies: Mapping[int, int] | None = None,
        mip0_voxels: int = 0,
        what: str = "",
    ) -> CentreIndex:
        """The index of ``[z, y, x]`` ``labels`` (class balance) and/or ``mask`` (non-zero voxels only)."""
        shape = (labels if labels is not None else mask).shape  # type: ignore[union-attr]
        flat_ids = labels.reshape(-1) if labels is not None else np.zeros(int(np.prod(shape)), np.uint8)
        keep = np.flatnonzero(mask.reshape(-1)) if mask is not None else np.arange(flat_ids.size)
        if keep.size == 0:
            raise InvalidRequest(f"{what}: the mask has no non-zero voxel at mip {mip}; no patch can be centred there")
        if labels is None:
            return cls(mip, voxel_size, start, shape, ("mask",), (keep.astype(np.int64),), np.array([1.0]))
        ids, inverse = np.unique(flat_ids[keep], return_inverse=True)
        class_of = {int(i): _class_name(int(i), class_map, names) for i in ids}
        classes = tuple(sorted(set(class_of.values())))
        position = {c: k for k, c in enumerate(classes)}
        per_id = np.array([position[class_of[int(i)]] for i in ids], dtype=np.int64)
        voxel_class = per_id[inverse.reshape(-1)]
        members = tuple(keep[voxel_class == k].astype(np.int64) for k in range(len(classes)))
        counts = np.array([len(m) for m in members], dtype=np.float64)
        frequency = _frequencies(classes, class_of, frequencies, mip0_voxels, counts * (mip0_voxels / flat_ids.size if mip0_voxels else 1.0))
        weights = counts / frequency  # sum over a class's voxels of 1 / f(class)
        cumulative = np.cumsum(weights / weights.sum())
        cumulative[-1] = 1.0
        return cls(mip, voxel_size, start, shape, classes, members, cumulative)

    def draw(self, rng: np.random.Generator) -> tuple[float, float, float]:
        """A centre (x, y, z) in nm: a class by weight, one of its voxels, a uniform point inside it."""
        k = min(int(np.searchsorted(self.cumulative, rng.random(), side="right")), len(self.classes) - 1)
        members = self.voxels[k]
        flat = int(members[rng.integers(0, len(members))])
        z, y, x = np.unravel_index(flat, self.shape_zyx)
        jitter = rng.random(3)
        return xyz_float((s + int(i) + float(j)) * v for s, i, j, v in zip(self.start, (x, y, z), jitter, self.voxel_size))


def _class_name(segment: int, class_map: Mapping[int, str] | None, names: Mapping[int, str] | None) -> str:
    if class_map is not None and segment in class_map:
        return str(class_map[segment])
    if segment == 0:
        return BACKGROUND
    return str((names or {}).get(segment, f"segment {segment}"))


def _frequencies(classes: tuple[str, ...], class_of: dict[int, str], frequencies: Mapping[int, int] | None, mip0_voxels: int, counted: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    if not frequencies:
        return counted
    total = dict.fromkeys(classes, 0.0)
    labelled = float(sum(frequencies.values()))
    # background's mip-0 count is what the properties leave over (they list non-zero ids only)
    for segment, name in class_of.items():
        total[name] += float(frequencies.get(segment, 0)) if segment else max(0.0, mip0_voxels - labelled)
    # a class the properties do not count falls back to its index count (``counted``, scaled to mip 0)
    return np.array([total[c] if total[c] > 0 else counted[k] for k, c in enumerate(classes)], dtype=np.float64)


def centre_index(store: Any, record: dict[str, Any], *, label_layer: str | None, balance: bool, class_map: Mapping[int, str] | None, mask: str | None) -> CentreIndex:
    """The index of one dataset (``record``) from its label layer (``balance``) and/or ``mask`` layer, read whole at :func:`index_mip`."""
    dataset = record["id"]
    mip = index_mip(record["mips"])

    def whole(layer: str) -> tuple[tuple[int, int, int], npt.NDArray[Any]]:
        bounds = store.bounds(dataset, mip, layer)
        block = np.asarray(store.read_block(dataset, bounds.start, bounds.size, mip=mip, layer=layer))
        return bounds.start, (block if block.ndim == 3 else np.any(block != 0, axis=0))

    labels = mask_voxels = None
    names: dict[int, str] = {}
    frequencies: dict[int, int] = {}
    start: tuple[int, int, int] = (0, 0, 0)
    if balance and label_layer is not None:
        start, labels = whole(label_layer)
        names, frequencies = segment_classes(store, record, label_layer)
    if mask is not None:
        start, mask_voxels = whole(mask)
    voxel_size = tuple(float(v) for v in record["mips"][mip]["voxel_size"])
    return CentreIndex.build(
        mip,
        voxel_size,  # type: ignore[arg-type]
        start,
        labels,
        mask_voxels,
        class_map=class_map,
        names=names,
        frequencies=frequencies,
        mip0_voxels=math.prod(int(n) for n in record["mips"][0]["shape"]),
        what=f"dataset {dataset!r}, mask layer {mask!r}",
    )
