"""A PyTorch ``Dataset`` of fixed-size patches read through the block API.

>>> ds = BlockDataset("blockio-data", "demo", patch_size=(64, 64, 16))
>>> item = ds[0]
>>> item["image"].shape          # [c, z, y, x]
torch.Size([1, 16, 64, 64])

Items are drawn by a *sampler* (:mod:`blockio.data.samplers`): ``"grid"``
walks the boxes of :meth:`blockio.store.Store.iter_blocks` over every dataset
(for inference), ``"random"`` draws item ``i`` from
``numpy.random.default_rng([seed, epoch, i])`` (for training), so an item is
a pure function of ``(seed, epoch, i)`` and a ``DataLoader`` gives the same
samples for any ``num_workers`` and any order of access. Everything but the
patch size, the epoch length and the seed is a field of one frozen
:class:`~blockio.data.options.DatasetOptions`.

Fork and spawn: the dataset never uses a :class:`~blockio.store.Store`
opened in another process. Each process opens its own on first use (a
CloudVolume handle shared across ``fork`` can return another process's
data), and pickling (``spawn``) drops it.

This module imports torch; ``import blockio`` does not import this module.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import Dataset

from blockio.boxes import Xyz, check_overlap, parse_xyz
from blockio.client import RemoteStore, connect
from blockio.data.centres import centre_index
from blockio.data.harmonize import HistogramMatch, parse_harmonize
from blockio.data.options import DatasetOptions, non_negative_int, with_overrides
from blockio.data.physical import TargetGrid
from blockio.data.reading import PatchRequest, PatchSource, read_patch
from blockio.data.samplers import Volume, centred_offset, cumulative_weights, grid_item, random_offset, random_volume
from blockio.errors import InvalidRequest
from blockio.store import Store

__all__ = ["FOREGROUND_FRACTION", "FOREGROUND_TRIES", "BlockDataset", "DatasetOptions"]

FOREGROUND_FRACTION = 0.1
"""A random patch passes a float ``foreground`` threshold when at least this fraction of its voxels reach it."""
FOREGROUND_TRIES = 20
"""Random draws per item before the last one is taken whatever it holds."""


class BlockDataset(Dataset[dict[str, Any]]):
    """Fixed-size patches of one or more catalogued datasets, as a map-style ``Dataset``.

    Parameters
    ----------
    root
        The store root (as for :func:`blockio.store.open_store`), or the URL
        of a blockio server.
    datasets
        One dataset id or a list of them.
    patch_size
        (x, y, z) voxels at the mip read, or of ``voxel_size`` nm when that
        option is given. Patches may be larger than a volume (with
        ``boundary="zero"`` or ``"reflect"``).
    samples_per_epoch
        Items per epoch of the random sampler (before sharding); default the
        number of grid boxes.
    seed
        Non-negative integer; with the epoch and the index it fixes each random item.
    options
        A :class:`~blockio.data.options.DatasetOptions`: the mip, sampler,
        target voxel size, grid overlap, label layer, normalisation and
        harmonisation, boundary, transform, returned mask, shard (``rank``,
        ``world_size``), dataset weights, foreground rule, class balance and
        mask layer (default: its defaults).
    **overrides
        Fields of ``options`` to replace (``label_layer="truth"``,
        ``sampler="grid"``, ...).

    Items are dicts: ``image`` float32 ``[c, z, y, x]``; ``label`` int64
    ``[z, y, x]`` (with ``label_layer``); ``mask`` bool ``[z, y, x]`` (with
    ``return_mask``); ``offset`` int64 (x, y, z) at ``mip`` (in target
    voxels with ``voxel_size``: multiply by it for nm); ``dataset``
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
        samples_per_epoch: int | None = None,
        seed: int = 0,
        options: DatasetOptions | None = None,
        **overrides: Any,
    ) -> None:
        ids = [datasets] if isinstance(datasets, str) else list(datasets)
        if not ids or not all(isinstance(d, str) for d in ids):
            raise InvalidRequest(f"datasets must be a dataset id or a non-empty list of ids, got {datasets!r}")
        if len(set(ids)) != len(ids):
            raise InvalidRequest(f"datasets must not repeat an id, got {ids}; use weights to favour one")
        self.patch_size: Xyz = parse_xyz(patch_size, "patch_size", positive=True)
        opts = self.options = with_overrides(options, overrides)
        self.overlap: Xyz = opts.overlap_xyz
        check_overlap(self.patch_size, self.overlap, block_name="patch_size")
        self.seed = non_negative_int(seed, "seed")
        self.root = root
        self.mip = opts.mip
        self.sampler = opts.sampler
        self.label_layer = opts.label_layer
        self.normalize = opts.normalize
        self.boundary = opts.boundary
        self.transform = opts.transform
        self.return_mask = opts.return_mask
        self.rank = opts.rank
        self.world_size = opts.world_size
        self.epoch = 0
        self._store: Store | RemoteStore | None = None
        self._store_pid: int | None = None
        store = self._open_store()
        self.voxel_size = opts.target_voxel_size
        self._foreground_layer, self._threshold = opts.foreground_rule()
        self._request = PatchRequest(self.normalize, self.boundary, self.return_mask, self.label_layer, self._foreground_layer)
        layers = [name for name in (self.label_layer, self._foreground_layer, opts.mask) if name is not None]
        reference = parse_harmonize(opts.harmonize)
        reference_record = store.info(reference) if reference is not None else None
        built = [self._volume(store, d, layers, reference_record) for d in ids]
        self._volumes = tuple(volume for volume, _ in built)
        self._sources = {volume.id: source for volume, source in built}
        self._grid_ends = np.cumsum([v.grid_count for v in self._volumes])
        self._cumulative_weights = cumulative_weights(self._volumes, opts.weights)

        grid_total = int(self._grid_ends[-1])
        if self.sampler == "grid" or samples_per_epoch is None:
            self.total = grid_total
        else:
            self.total = non_negative_int(samples_per_epoch, "samples_per_epoch")
            if self.total == 0:
                raise InvalidRequest("samples_per_epoch must be positive, got 0")

    # -- construction ------------------------------------------------------
    def _volume(self, store: Store | RemoteStore, dataset: str, layers: list[str], reference: dict[str, Any] | None) -> tuple[Volume, PatchSource]:
        record = store.info(dataset)  # DatasetNotFound names the catalogued ids
        grid: TargetGrid | None = None
        try:
            if self.voxel_size is None:
                mip = self.mip
                frame = bounds = store.bounds(dataset, mip)
            else:
                grid = TargetGrid.of(record["mips"], store.bounds(dataset, 0), lambda m: store.bounds(dataset, m), self.voxel_size)
                mip, bounds, frame = grid.mip, grid.bounds, grid.target_bounds()
        except InvalidRequest as exc:
            raise InvalidRequest(f"dataset {dataset!r}: {exc}") from exc
        if self.boundary == "error" and any(p > s for p, s in zip(self.patch_size, frame.size)):
            where = f"at mip {mip}" if grid is None else f"at {list(grid.target)} nm"
            raise InvalidRequest(
                f"patch_size {list(self.patch_size)} (x, y, z) exceeds dataset {dataset!r} {where}, "
                f"shape {list(frame.size)}, and boundary='error'; use boundary='zero' or 'reflect'"
            )
        for name in layers:
            available = store.layers(dataset)
            if name not in available:
                raise InvalidRequest(f"dataset {dataset!r} has no layer {name!r} (layers: {', '.join(sorted(available))})")
            try:
                layer_bounds = store.bounds(dataset, mip, name)
            except InvalidRequest as exc:
                raise InvalidRequest(f"dataset {dataset!r}, layer {name!r}: {exc}") from exc
            if layer_bounds != bounds:
                raise InvalidRequest(f"dataset {dataset!r}: layer {name!r} has bounds {layer_bounds} at mip {mip}, the image {bounds}")
            channels = int(available[name].get("channels", 1))
            if name == self.label_layer and channels != 1:
                raise InvalidRequest(f"dataset {dataset!r}: label layer {name!r} has {channels} channels, labels need one")
        voxel_size = grid.target if grid is not None else tuple(float(v) for v in record["mips"][mip]["voxel_size"])
        volume = Volume.of(dataset, frame, voxel_size, self.patch_size, self.overlap)  # type: ignore[arg-type]
        return volume, self._source(store, record, mip, grid, reference)

    def _source(self, store: Store | RemoteStore, record: dict[str, Any], mip: int, grid: TargetGrid | None, reference: dict[str, Any] | None) -> PatchSource:
        opts = self.options
        match = None
        if reference is not None and reference["id"] != record["id"]:
            if reference["channels"] not in (1, record["channels"]):
                raise InvalidRequest(f"dataset {record['id']!r} has {record['channels']} channels, the histogram reference {reference['id']!r} {reference['channels']}")
            match = HistogramMatch.of(record["stats"], reference["stats"], int(record["channels"]), dataset=record["id"], reference=reference["id"])
        centres = None
        if opts.balance is not None or opts.mask is not None:
            centres = centre_index(store, record, label_layer=self.label_layer, balance=opts.balance == "class", class_map=opts.class_map, mask=opts.mask)
        return PatchSource(record["id"], mip, grid, match, reference["stats"] if match is not None and reference is not None else None, centres)

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
        self.epoch = non_negative_int(epoch, "epoch")

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
            volume, offset = grid_item(self._volumes, self._grid_ends, i)
            arrays = self._read(volume, offset)
        else:
            volume, arrays = self._draw(i)
        return self._item(volume, arrays, i)

    # -- reading -------------------------------------------------------------
    def _draw(self, i: int) -> tuple[Volume, dict[str, Any]]:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        volume = random_volume(rng, self._volumes, self._cumulative_weights)
        centres = self._sources[volume.id].centres
        for _ in range(FOREGROUND_TRIES if self._foreground_layer or self._threshold is not None else 1):
            if centres is None:
                offset = random_offset(rng, volume, self.patch_size)
            else:
                offset = centred_offset(volume, centres.draw(rng), self.patch_size)
            arrays = self._read(volume, offset)
            if self._accept(arrays):
                break
        return volume, arrays

    def _read(self, volume: Volume, offset: Xyz) -> dict[str, Any]:
        return read_patch(self._open_store(), self._sources[volume.id], self._request, offset, self.patch_size)

    def _accept(self, arrays: dict[str, Any]) -> bool:
        if self._foreground_layer is not None:
            return bool(np.any(arrays["foreground"]))
        if self._threshold is not None:
            above = np.any(arrays["image"] >= self._threshold, axis=0)
            return bool(above.mean() >= FOREGROUND_FRACTION)
        return True

    def _item(self, volume: Volume, arrays: dict[str, Any], i: int) -> dict[str, Any]:
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
            f"BlockDataset({list(self.datasets)}, patch_size={list(self.patch_size)}, "
            + (f"mip={self.mip}, " if self.voxel_size is None else f"voxel_size={list(self.voxel_size)}, ")
            + f"sampler={self.sampler!r}, items={len(self)} of {self.total}, rank={self.rank}/{self.world_size})"
        )


def _tensor(array: npt.NDArray[Any], dtype: type[np.generic]) -> torch.Tensor:
    out = np.ascontiguousarray(array, dtype=dtype)
    if not out.flags.writeable:  # torch.from_numpy warns on read-only arrays
        out = out.copy()
    return torch.from_numpy(out)


def _forget_inherited_handles() -> None:
    # blockio.layers.reader keeps one CloudFiles per layer path in a module global; a copy
    # inherited through fork may share connection pools with the parent
    from blockio.layers import reader

    reader._CF_CACHE.clear()
