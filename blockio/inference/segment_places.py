"""Where segments are: one voxel inside each, near its centre, found slab by slab.

A review item opens the view centred on its segment, so each chosen segment
needs a place to look at. The centroid of a curved segment may lie outside
it, so the place is the segment's own voxel nearest its centroid (distance in
nanometres, so anisotropic voxels weigh right). Two passes over z-slabs of
the layer: the first sums coordinates per id, the second finds that voxel;
memory follows the slab and the number of ids asked for, never the volume.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["SLAB_VOXELS", "segment_places", "slabs"]

SLAB_VOXELS = 1 << 24
"""Voxels per z-slab read (as :mod:`blockio.inference.evaluate`)."""

Xyz = tuple[int, int, int]


def slabs(store: Any, dataset: str, layer: str, *, slab_voxels: int = SLAB_VOXELS) -> Iterator[tuple[Xyz, npt.NDArray[Any]]]:
    """``((x0, y0, z0), block [z, y, x])`` for each z-slab of a layer at mip 0, in order."""
    bounds = store.reader(dataset, layer).bounds(0)
    nx, ny, _nz = bounds.size
    step = max(1, slab_voxels // max(1, nx * ny))
    for z0 in range(bounds.start[2], bounds.stop[2], step):
        dz = min(step, bounds.stop[2] - z0)
        offset = (int(bounds.start[0]), int(bounds.start[1]), int(z0))
        yield offset, store.read_block(dataset, offset, (nx, ny, dz), layer=layer)


def _hits(
    store: Any, dataset: str, layer: str, wanted: npt.NDArray[np.uint64], slab_voxels: int
) -> Iterator[tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]]:
    """For each slab that holds any ``wanted`` id: the index into ``wanted`` of each such voxel and its ``[n, 3]`` (x, y, z)."""
    for offset, block in slabs(store, dataset, layer, slab_voxels=slab_voxels):
        labels = block.astype(np.uint64, copy=False)
        where = np.isin(labels, wanted)
        if not where.any():
            continue
        z, y, x = np.nonzero(where)
        yield np.searchsorted(wanted, labels[where]), np.stack([x + offset[0], y + offset[1], z + offset[2]], axis=1).astype(np.float64)


def segment_places(
    store: Any, dataset: str, layer: str, ids: Iterable[int], *, voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0), slab_voxels: int = SLAB_VOXELS
) -> dict[int, Xyz]:
    """For each id present in ``layer``, its voxel (x, y, z) at mip 0 nearest its centroid.

    Parameters
    ----------
    store
        A :class:`blockio.store.Store` (anything with ``reader`` and ``read_block``).
    dataset, layer
        The segmentation layer.
    ids
        Segment ids; those absent from the layer are left out of the answer.
    voxel_size
        (x, y, z) nanometres, for the distance to the centroid.
    """
    wanted = np.unique(np.asarray([int(i) for i in ids if int(i) != 0], dtype=np.uint64))
    if not len(wanted):
        return {}
    sums = np.zeros((len(wanted), 3), dtype=np.float64)
    counts = np.zeros(len(wanted), dtype=np.float64)
    for index, coords in _hits(store, dataset, layer, wanted, slab_voxels):
        counts += np.bincount(index, minlength=len(wanted))
        for axis in range(3):
            sums[:, axis] += np.bincount(index, weights=coords[:, axis], minlength=len(wanted))
    present = counts > 0
    centroids = np.zeros_like(sums)
    centroids[present] = sums[present] / counts[present, None]
    scale = np.asarray(voxel_size, dtype=np.float64)
    best = np.full(len(wanted), np.inf)
    place = np.zeros((len(wanted), 3), dtype=np.int64)
    for index, coords in _hits(store, dataset, layer, wanted, slab_voxels):
        distance = (((coords - centroids[index]) * scale) ** 2).sum(axis=1)
        # the nearest voxel of each id in this slab: sort by (id, distance), keep each id's first
        order = np.lexsort((distance, index))
        first = np.ones(len(order), dtype=bool)
        first[1:] = index[order][1:] != index[order][:-1]
        chosen = order[first]
        ids_here = index[chosen]
        better = distance[chosen] < best[ids_here]
        best[ids_here[better]] = distance[chosen][better]
        place[ids_here[better]] = coords[chosen][better].astype(np.int64)
    return {int(wanted[i]): (int(place[i, 0]), int(place[i, 1]), int(place[i, 2])) for i in np.flatnonzero(present)}
