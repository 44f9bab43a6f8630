"""How a :class:`~blockio.data.dataset.BlockDataset` reads one patch of one dataset.

A :class:`PatchSource` is fixed per dataset at construction: the mip read,
the :class:`~blockio.data.physical.TargetGrid` when patches are in physical
units, the :class:`~blockio.data.harmonize.HistogramMatch` and the statistics
to normalise with when histograms are matched, and the
:class:`~blockio.data.centres.CentreIndex` of class-balanced or masked draws.
:func:`read_patch` returns the arrays of one patch at an (x, y, z) offset in
the dataset's frame (voxels of the mip, or target voxels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.boxes import Xyz
from blockio.data.centres import CentreIndex
from blockio.data.harmonize import HistogramMatch
from blockio.data.physical import TargetGrid
from blockio.normalize import normalize as apply_normalization

__all__ = ["PatchRequest", "PatchSource", "read_patch"]


@dataclass(frozen=True)
class PatchSource:
    """What is fixed about reading one dataset's patches."""

    id: str
    mip: int
    grid: TargetGrid | None = None
    match: HistogramMatch | None = None
    stats: dict[str, Any] | None = None  # normalise with these (the reference's) when matching histograms
    centres: CentreIndex | None = None


@dataclass(frozen=True)
class PatchRequest:
    """What every read of a dataset asks for (the dataset's options)."""

    normalize: str | None
    boundary: str
    return_mask: bool
    label_layer: str | None
    foreground_layer: str | None


def read_patch(store: Any, source: PatchSource, request: PatchRequest, offset: Xyz, size: Xyz) -> dict[str, Any]:
    """``image`` ``[c, z, y, x]``, ``offset``, and ``mask``, ``label``, ``foreground`` as requested."""
    arrays: dict[str, Any] = {"offset": offset}
    layers = [name for name in (request.label_layer, request.foreground_layer) if name is not None]
    if source.grid is None:
        arrays["image"], mask = _native_image(store, source, request, offset, size)
        for name in dict.fromkeys(layers):
            arrays[name] = store.read_block(source.id, offset, size, mip=source.mip, layer=name, boundary=request.boundary)
    else:
        arrays["image"], mask = _resampled_image(store, source, request, offset, size)
        for name in dict.fromkeys(layers):
            arrays[name] = _resampled_labels(store, source, name, request.boundary, offset, size)
    if request.return_mask:
        arrays["mask"] = mask
    if request.label_layer is not None:
        arrays["label"] = arrays[request.label_layer]
    if request.foreground_layer is not None:
        arrays["foreground"] = arrays[request.foreground_layer]
    return arrays


def _channels(block: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return block if block.ndim == 4 else block[np.newaxis]


def _harmonised(source: PatchSource, request: PatchRequest, raw: npt.NDArray[Any]) -> npt.NDArray[Any]:
    assert source.match is not None  # noqa: S101 - callers check
    matched = source.match(raw)
    if request.normalize is None or source.stats is None:
        return matched
    return apply_normalization(matched, request.normalize, source.stats)


def _native_image(store: Any, source: PatchSource, request: PatchRequest, offset: Xyz, size: Xyz) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_] | None]:
    if source.match is None:
        image = store.read_block(source.id, offset, size, mip=source.mip, boundary=request.boundary, normalize=request.normalize, return_mask=request.return_mask)
        if request.return_mask:
            image, mask = image
            return _channels(image), mask
        return _channels(image), None
    raw, mask = store.read_block(source.id, offset, size, mip=source.mip, boundary=request.boundary, return_mask=True)
    image = _harmonised(source, request, _channels(raw))
    if request.boundary == "zero":
        image[:, ~mask] = 0  # outside the volume reads as 0, as without matching
    return image, mask


def _resampled_image(store: Any, source: PatchSource, request: PatchRequest, offset: Xyz, size: Xyz) -> tuple[npt.NDArray[Any], npt.NDArray[np.bool_]]:
    grid = source.grid
    assert grid is not None  # noqa: S101 - callers check
    box = grid.source_box(offset, size)
    # the margin may leave the volume where the patch does not: mirrored voxels stand in for it there
    normalize = request.normalize if source.match is None else None
    block = _channels(store.read_block(source.id, box.start, box.size, mip=grid.mip, boundary="reflect", normalize=normalize))
    if source.match is not None:
        block = _harmonised(source, request, block)
    image = grid.resample_image(block, box, offset, size)
    inside = grid.inside(offset, size)
    if request.boundary == "zero":
        image[:, ~inside] = 0
    return image, inside


def _resampled_labels(store: Any, source: PatchSource, layer: str, boundary: str, offset: Xyz, size: Xyz) -> npt.NDArray[Any]:
    grid = source.grid
    assert grid is not None  # noqa: S101 - callers check
    box = grid.source_box(offset, size)  # the image's box: its margin costs a few voxels and keeps one code path
    labels = grid.resample_labels(store.read_block(source.id, box.start, box.size, mip=grid.mip, layer=layer, boundary="reflect"), box, offset, size)
    if boundary == "zero":
        labels[..., ~grid.inside(offset, size)] = 0
    return labels
