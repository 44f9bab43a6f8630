"""``write_segmentation``: a whole labels array (or an iterable of blocks) into a layer, in one call."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import InvalidOption
from .execution import run_tasks
from .geometry import tile_boxes
from .ingest import DEFAULT_TASK_BYTES
from .segmentation import Root, SegmentationWriter, Xyz
from .segmentation_options import SegmentationOptions, with_overrides
from .segmentation_tasks import write_region
from .tasks import Box, plan_passes

__all__ = ["write_segmentation"]


def write_segmentation(
    root: Root,
    dataset_id: str,
    name: str,
    labels: npt.NDArray[Any] | Iterable[tuple[Xyz, npt.NDArray[Any]]],
    *,
    options: SegmentationOptions | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """Write a segmentation layer of ``dataset_id`` and catalog it.

    Parameters
    ----------
    labels
        A whole C-order ``[z, y, x]`` array of ids placed at ``options.offset``
        (x, y, z; it must fit the image's bounds, the rest is background), or an
        iterable of ``(offset_xyz, block_zyx)`` chunk-aligned blocks.
    options
        A :class:`~precomputed.segmentation_options.SegmentationOptions`
        (default: its defaults).
    **overrides
        Fields of ``options`` to replace (``meshes=False``, ``overwrite=True``, ...).

    Returns
    -------
    The layer's catalog record.
    """
    opts = with_overrides(options, overrides)
    writer = SegmentationWriter.create(root, dataset_id, name, dtype=opts.dtype, overwrite=opts.overwrite)
    if isinstance(labels, np.ndarray):
        _write_array(writer, labels, opts.offset, opts.workers)
    else:
        for block_offset, block in labels:
            writer.write_block(block_offset, block)
    provenance = dict(opts.provenance or {})
    return writer.finalize(provenance=provenance, class_names=opts.class_names, meshes=opts.meshes, workers=opts.workers, scheduler=opts.scheduler, progress=opts.progress, shard=opts.shard)


def _write_array(writer: SegmentationWriter, labels: npt.NDArray[Any], offset: Xyz, workers: int | None) -> None:
    if labels.ndim != 3:
        raise InvalidOption(f"labels must be a 3-D [z, y, x] array, got shape {labels.shape}")
    start = tuple(int(v) for v in offset)
    stop = tuple(o + n for o, n in zip(start, labels.shape[::-1]))
    shape = writer.shape_xyz
    if len(start) != 3 or any(o < 0 for o in start) or any(b > n for b, n in zip(stop, shape)):
        raise InvalidOption(f"labels of shape {labels.shape} [z, y, x] at offset {start} (x, y, z) do not fit the image bounds {shape} (x, y, z)")
    writer.check_ids(labels)  # once for the whole array, so no block fails half-way
    # blocks of the pass-0 task size, aligned to the chunk grid, covering the labels' box
    grid = plan_passes(writer.mips, writer.chunk_size, voxel_bytes=writer.dtype.itemsize, task_bytes=DEFAULT_TASK_BYTES)[0].box_size
    boxes = tile_boxes(shape, grid, within=Box(start, stop))
    # the array lives in this process: threads share it without copies
    run_tasks(partial(write_region, writer, labels, start), boxes, scheduler="threads", workers=workers, progress=False, desc=f"{writer.name} mip 0")
