"""A PyTorch ``Dataset`` of fixed-size patches read through the block API.

>>> ds = BlockDataset("blockio-data", "demo", patch_size=(64, 64, 16))
>>> item = ds[0]
>>> item["image"].shape          # [c, z, y, x]
torch.Size([1, 16, 64, 64])

Items are drawn by a *sampler*: ``"grid"`` walks the boxes of
:meth:`blockio.store.Store.iter_blocks` over every dataset (for inference),
``"random"`` draws item ``i`` from ``numpy.random.default_rng([seed, epoch,
i])`` (for training), so an item is a pure function of ``(seed, epoch, i)``
and a ``DataLoader`` gives the same samples for any ``num_workers`` and any
order of access.

Fork and spawn: the dataset never uses a :class:`~blockio.store.Store`
opened in another process. Each process opens its own on first use (a
CloudVolume handle shared across ``fork`` can return another process's
data), and pickling (``spawn``) drops it.

This module imports torch; ``import blockio`` does not import this module.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from blockio.boxes import VoxelBox, parse_xyz
from blockio.client import RemoteStore, connect
from blockio.errors import InvalidRequest
from blockio.normalize import NORMALIZATIONS
from blockio.store import Store

__all__ = ["FOREGROUND_FRACTION", "FOREGROUND_TRIES", "BlockDataset"]

SAMPLERS = ("random", "grid")
# "clip" would give patches of varying shape, which cannot be batched
DATASET_BOUNDARIES = ("zero", "reflect", "error")
FOREGROUND_FRACTION = 0.1
"""A random patch passes a float ``foreground`` threshold when at least this fraction of its voxels reach it."""
FOREGROUND_TRIES = 20
"""Random draws per item before the last one is taken whatever it holds."""

Xyz = tuple[int, int, int]
Transform = Callable[[npt.NDArray[np.float32], tuple[float, float, float]], Any]


@dataclass(frozen=True)
class _Volume:
    """What the dataset needs of one catalogued dataset, fixed at construction."""

    id: str
    bounds: VoxelBox
    voxel_size: tuple[float, float, float]
    grid: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]  # (x, y, z) box starts

    @property
    def grid_count(self) -> int:
        return len(self.grid[0]) * len(self.grid[1]) * len(self.grid[2])

    def grid_offset(self, j: int) -> Xyz:
        # same order as Store.iter_blocks: x fastest, then y, then z
        xs, ys, zs = self.grid
        return (int(xs[j % len(xs)]), int(ys[(j // len(xs)) % len(ys)]), int(zs[j // (len(xs) * len(ys))]))


def _grid_starts(lo: int, hi: int, block: int, overlap: int) -> npt.NDArray[np.int64]:
    # mirrors Store.iter_blocks, which yields boxes but not its per-axis starts (needed for O(1) indexing)
    if hi - lo <= block:
        return np.array([lo], dtype=np.int64)
    starts = set(range(lo, hi - block, block - overlap)) | {hi - block}
    return np.array(sorted(starts), dtype=np.int64)


class BlockDataset(Dataset[dict[str, Any]]):
    """Fixed-size patches of one or more catalogued datasets, as a map-style ``Dataset``.

    Parameters
    ----------
    root
        The store root (as for :func:`blockio.store.open_store`).
    datasets
        One dataset id or a list of them.
    patch_size
        (x, y, z) voxels at ``mip``. Patches may be larger than a volume
        (with ``boundary="zero"`` or ``"reflect"``).
    mip
        Pyramid level to read; must exist in every dataset.
    sampler
        ``"random"``: ``samples_per_epoch`` patches at uniform offsets where
        the patch fits (the volume's start on an axis where it does not).
        ``"grid"``: every box of ``Store.iter_blocks(id, patch_size,
        overlap, mip)`` of every dataset, in order, concatenated;
        ``samples_per_epoch``, ``weights`` and ``seed`` play no part.
    samples_per_epoch
        Items per epoch of the random sampler (before sharding); default the
        number of grid boxes.
    overlap
        (x, y, z) overlap of grid boxes, ``0 <= overlap < patch_size``.
    label_layer
        A layer of every dataset read as ``label`` (int64, no normalisation).
    normalize
        ``"percentile"`` (default), ``"zscore"``, ``"minmax"`` or ``None``
        (raw values as float32), from the catalog's statistics.
    boundary
        ``"zero"`` (default), ``"reflect"`` or ``"error"`` for voxels
        outside the volume.
    seed
        Non-negative integer; with the epoch and the index it fixes each random item.
    transform
        ``transform(image, voxel_size) -> image``, e.g.
        :class:`blockio.data.transforms.Compose`: ``image`` is the float32
        ``[c, z, y, x]`` block after normalisation, ``voxel_size`` the mip's
        (x, y, z) in nm. It applies to the **image only**: ``label`` and
        ``mask`` are not transformed, so a transform that changes the shape
        leaves them misaligned. It must be picklable for ``spawn`` workers,
        and randomness inside it is outside the determinism guarantee.
    return_mask
        Add ``mask``: bool ``[z, y, x]``, True for voxels inside the volume.
    rank, world_size
        Shard for distributed training: this dataset exposes the items
        ``i`` with ``i % world_size == rank`` only, so ranks see disjoint
        items and together all of them (as ``DistributedSampler`` without
        padding). Lengths differ by at most one between ranks; choose
        ``samples_per_epoch`` as a multiple of ``world_size`` so every rank
        runs the same number of steps.
    weights
        How the random sampler picks a dataset: ``"size"`` (default, in
        proportion to voxel count at ``mip``), ``"equal"``, or one
        non-negative number per dataset.
    foreground
        Random sampler only. ``None`` (accept every patch); a float
        threshold: accept a patch when at least :data:`FOREGROUND_FRACTION`
        of its voxels (any channel, after normalisation, before
        ``transform``; voxels outside the volume count) are ``>=`` the
        threshold; or ``{"layer": name}``: accept a patch where that layer
        has a non-zero voxel. The dataset is drawn once per item, then the
        offset is redrawn from the same generator up to
        :data:`FOREGROUND_TRIES` times; the last try is kept if none passes.

    Items are dicts: ``image`` float32 ``[c, z, y, x]``; ``label`` int64
    ``[z, y, x]`` (with ``label_layer``); ``mask`` bool ``[z, y, x]`` (with
    ``return_mask``); ``offset`` int64 (x, y, z) at ``mip``; ``dataset``
    (id); ``index`` (the item's index before sharding).

    ``set_epoch(epoch)`` changes the random draw. DataLoader workers hold
    copies of the dataset, so call it before the epoch's iterator is
    created, and not with ``persistent_workers=True``, whose workers keep the
    epoch they started with.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        datasets: str | Sequence[str],
        patch_size: Sequence[int],
        *,
        mip: int = 0,
        sampler: str = "random",
        samples_per_epoch: int | None = None,
        overlap: Sequence[int] = (0, 0, 0),
        label_layer: str | None = None,
        normalize: str | None = "percentile",
        boundary: str = "zero",
        seed: int = 0,
        transform: Transform | None = None,
        return_mask: bool = False,
        rank: int = 0,
        world_size: int = 1,
        weights: str | Sequence[float] = "size",
        foreground: float | Mapping[str, str] | None = None,
    ) -> None:
        ids = [datasets] if isinstance(datasets, str) else list(datasets)
        if not ids or not all(isinstance(d, str) for d in ids):
            raise InvalidRequest(f"datasets must be a dataset id or a non-empty list of ids, got {datasets!r}")
        if len(set(ids)) != len(ids):
            raise InvalidRequest(f"datasets must not repeat an id, got {ids}; use weights to favour one")
        self.patch_size: Xyz = parse_xyz(patch_size, "patch_size", positive=True)
        self.overlap: Xyz = parse_xyz(overlap, "overlap")
        if any(o < 0 or o >= p for o, p in zip(self.overlap, self.patch_size)):
            raise InvalidRequest(f"overlap must be >= 0 and smaller than patch_size on every axis, got {list(self.overlap)} for patch_size {list(self.patch_size)}")
        if sampler not in SAMPLERS:
            raise InvalidRequest(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if normalize is not None and normalize not in NORMALIZATIONS:
            raise InvalidRequest(f"normalize must be one of {', '.join(NORMALIZATIONS)} or None, got {normalize!r}")
        if boundary not in DATASET_BOUNDARIES:
            raise InvalidRequest(f"boundary must be one of {', '.join(DATASET_BOUNDARIES)} (patches have a fixed size), got {boundary!r}")
        self.seed = _non_negative_int(seed, "seed")
        self.world_size = _non_negative_int(world_size, "world_size")
        self.rank = _non_negative_int(rank, "rank")
        if self.world_size < 1 or self.rank >= self.world_size:
            raise InvalidRequest(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank!r}, world_size={world_size!r}")
        if transform is not None and not callable(transform):
            raise InvalidRequest(f"transform must be callable (image, voxel_size) -> image, got {transform!r}")
        if foreground is not None and sampler != "random":
            raise InvalidRequest("foreground applies to sampler='random' only; the grid sampler visits every box")

        self.root = root
        self.mip = mip
        self.sampler = sampler
        self.label_layer = label_layer
        self.normalize = normalize
        self.boundary = boundary
        self.transform = transform
        self.return_mask = bool(return_mask)
        self.epoch = 0
        self._store: Store | RemoteStore | None = None
        self._store_pid: int | None = None
        store = self._open_store()
        self._foreground_layer, self._threshold = self._parse_foreground(foreground)
        layers = [name for name in (label_layer, self._foreground_layer) if name is not None]
        self._volumes = tuple(self._volume(store, d, layers) for d in ids)
        self._grid_ends = np.cumsum([v.grid_count for v in self._volumes])
        self._cumulative_weights = self._parse_weights(weights)

        grid_total = int(self._grid_ends[-1])
        if sampler == "grid":
            self.total = grid_total
        elif samples_per_epoch is None:
            self.total = grid_total
        else:
            self.total = _non_negative_int(samples_per_epoch, "samples_per_epoch")
            if self.total == 0:
                raise InvalidRequest("samples_per_epoch must be positive, got 0")

    # -- construction ------------------------------------------------------
    def _volume(self, store: Store | RemoteStore, dataset: str, layers: list[str]) -> _Volume:
        record = store.info(dataset)  # DatasetNotFound names the catalogued ids
        try:
            bounds = store.bounds(dataset, self.mip)
        except InvalidRequest as exc:
            raise InvalidRequest(f"dataset {dataset!r}: {exc}") from exc
        if self.boundary == "error" and any(p > s for p, s in zip(self.patch_size, bounds.size)):
            raise InvalidRequest(
                f"patch_size {list(self.patch_size)} (x, y, z) exceeds dataset {dataset!r} at mip {self.mip}, "
                f"shape {list(bounds.size)}, and boundary='error'; use boundary='zero' or 'reflect'"
            )
        for name in layers:
            available = store.layers(dataset)
            if name not in available:
                raise InvalidRequest(f"dataset {dataset!r} has no layer {name!r} (layers: {', '.join(sorted(available))})")
            try:
                layer_bounds = store.bounds(dataset, self.mip, name)
            except InvalidRequest as exc:
                raise InvalidRequest(f"dataset {dataset!r}, layer {name!r}: {exc}") from exc
            if layer_bounds != bounds:
                raise InvalidRequest(f"dataset {dataset!r}: layer {name!r} has bounds {layer_bounds} at mip {self.mip}, the image {bounds}")
            channels = int(available[name].get("channels", 1))
            if name == self.label_layer and channels != 1:
                raise InvalidRequest(f"dataset {dataset!r}: label layer {name!r} has {channels} channels, labels need one")
        voxel_size = tuple(float(v) for v in record["mips"][self.mip]["voxel_size"])
        grid = tuple(_grid_starts(lo, hi, p, o) for lo, hi, p, o in zip(bounds.start, bounds.stop, self.patch_size, self.overlap))
        return _Volume(dataset, bounds, voxel_size, grid)  # type: ignore[arg-type]

    @staticmethod
    def _parse_foreground(foreground: object) -> tuple[str | None, float | None]:
        if foreground is None:
            return None, None
        if isinstance(foreground, numbers.Real) and not isinstance(foreground, bool):
            if not math.isfinite(float(foreground)):
                raise InvalidRequest(f"foreground threshold must be finite, got {foreground!r}")
            return None, float(foreground)
        if isinstance(foreground, Mapping) and set(foreground) == {"layer"} and isinstance(foreground["layer"], str):
            return foreground["layer"], None
        raise InvalidRequest(f"foreground must be None, a number (threshold) or {{'layer': name}}, got {foreground!r}")

    def _parse_weights(self, weights: object) -> npt.NDArray[np.float64]:
        n = len(self._volumes)
        if isinstance(weights, str):
            if weights == "size":
                values = np.array([math.prod(v.bounds.size) for v in self._volumes], dtype=np.float64)
            elif weights == "equal":
                values = np.ones(n)
            else:
                raise InvalidRequest(f"weights must be 'size', 'equal' or one number per dataset, got {weights!r}")
        else:
            try:
                values = np.array([float(w) for w in weights], dtype=np.float64)  # type: ignore[attr-defined]
            except (TypeError, ValueError):
                raise InvalidRequest(f"weights must be 'size', 'equal' or one number per dataset, got {weights!r}") from None
            if len(values) != n:
                raise InvalidRequest(f"weights has {len(values)} numbers for {n} datasets")
            if not np.all(np.isfinite(values)) or np.any(values < 0) or values.sum() <= 0:
                raise InvalidRequest(f"weights must be finite, >= 0 and not all 0, got {list(values)}")
        cumulative = np.cumsum(values / values.sum())
        cumulative[-1] = 1.0
        return cumulative

    # -- the store, per process --------------------------------------------
    def _open_store(self) -> Store | RemoteStore:
        pid = os.getpid()
        if self._store is None or self._store_pid != pid:
            if self._store_pid is not None and self._store_pid != pid:
                _forget_inherited_handles()
            text = os.fspath(self.root)
            # an http(s) URL reads from a blockio server: the same Dataset, remote data
            self._store = connect(text) if text.startswith(("http://", "https://")) else Store(self.root)
            self._store_pid = pid
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        state["_store_pid"] = None
        return state

    # -- Dataset -------------------------------------------------------------
    @property
    def datasets(self) -> tuple[str, ...]:
        """The dataset ids, in order."""
        return tuple(v.id for v in self._volumes)

    def set_epoch(self, epoch: int) -> None:
        """Select the random draw of an epoch (a non-negative integer)."""
        self.epoch = _non_negative_int(epoch, "epoch")

    def __len__(self) -> int:
        return len(range(self.rank, self.total, self.world_size))

    def __getitem__(self, index: int) -> dict[str, Any]:
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"index must be an integer, got {index!r}")
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"index {index} out of range for {n} items")
        i = self.rank + int(index) * self.world_size
        if self.sampler == "grid":
            k = int(np.searchsorted(self._grid_ends, i, side="right"))
            start = 0 if k == 0 else int(self._grid_ends[k - 1])
            volume = self._volumes[k]
            arrays = self._read(volume, volume.grid_offset(i - start))
        else:
            volume, arrays = self._draw(i)
        return self._item(volume, arrays, i)

    # -- reading -------------------------------------------------------------
    def _draw(self, i: int) -> tuple[_Volume, dict[str, Any]]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        k = int(np.searchsorted(self._cumulative_weights, rng.random(), side="right"))
        volume = self._volumes[min(k, len(self._volumes) - 1)]
        bounds = volume.bounds
        for _ in range(FOREGROUND_TRIES if self._foreground_layer or self._threshold is not None else 1):
            offset = tuple(int(lo + rng.integers(0, max(0, s - p) + 1)) for lo, s, p in zip(bounds.start, bounds.size, self.patch_size))
            arrays = self._read(volume, offset)  # type: ignore[arg-type]
            if self._accept(arrays):
                break
        return volume, arrays

    def _read(self, volume: _Volume, offset: Xyz) -> dict[str, Any]:
        store = self._open_store()
        common: dict[str, Any] = {"mip": self.mip, "boundary": self.boundary}
        image = store.read_block(volume.id, offset, self.patch_size, normalize=self.normalize, return_mask=self.return_mask, **common)
        arrays: dict[str, Any] = {"offset": offset}
        if self.return_mask:
            image, arrays["mask"] = image
        arrays["image"] = image if image.ndim == 4 else image[np.newaxis]
        if self.label_layer is not None:
            arrays["label"] = store.read_block(volume.id, offset, self.patch_size, layer=self.label_layer, **common)
        if self._foreground_layer is not None:
            if self._foreground_layer == self.label_layer:
                arrays["foreground"] = arrays["label"]
            else:
                arrays["foreground"] = store.read_block(volume.id, offset, self.patch_size, layer=self._foreground_layer, **common)
        return arrays

    def _accept(self, arrays: dict[str, Any]) -> bool:
        if self._foreground_layer is not None:
            return bool(np.any(arrays["foreground"]))
        if self._threshold is not None:
            above = np.any(arrays["image"] >= self._threshold, axis=0)
            return bool(above.mean() >= FOREGROUND_FRACTION)
        return True

    def _item(self, volume: _Volume, arrays: dict[str, Any], i: int) -> dict[str, Any]:
        image = arrays["image"].astype(np.float32, copy=False)
        if self.transform is not None:
            image = np.asarray(self.transform(image, volume.voxel_size))
            if image.ndim == 3:
                image = image[np.newaxis]
        item: dict[str, Any] = {"image": _tensor(image, np.float32)}
        if "label" in arrays:
            item["label"] = _tensor(arrays["label"], np.int64)
        if "mask" in arrays:
            item["mask"] = _tensor(arrays["mask"], np.bool_)
        item["offset"] = torch.tensor(arrays["offset"], dtype=torch.int64)
        item["dataset"] = volume.id
        item["index"] = i
        return item

    def __repr__(self) -> str:
        return (
            f"BlockDataset({list(self.datasets)}, patch_size={list(self.patch_size)}, mip={self.mip}, "
            f"sampler={self.sampler!r}, items={len(self)} of {self.total}, rank={self.rank}/{self.world_size})"
        )


def _tensor(array: npt.NDArray[Any], dtype: type[np.generic]) -> torch.Tensor:
    out = np.ascontiguousarray(array, dtype=dtype)
    if not out.flags.writeable:  # torch.from_numpy warns on read-only arrays
        out = out.copy()
    return torch.from_numpy(out)


def _non_negative_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InvalidRequest(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


def _forget_inherited_handles() -> None:
    # blockio.layers.reader keeps one CloudFiles per layer path in a module global; a copy
    # inherited through fork may share connection pools with the parent
    from blockio.layers import reader

    reader._CF_CACHE.clear()
