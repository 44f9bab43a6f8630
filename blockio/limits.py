"""The block size limits, the same for the Python store, the REST API and block writes.

A block is limited in voxels and in bytes, the bytes counted with the dtype
of the layer being read (or of the array being written), so a ``uint64``
label block and a ``uint8`` image block of the same size are judged by what
they really weigh.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import TooLarge

__all__ = ["check_block_size"]


def check_block_size(
    size_xyz: Sequence[int],
    *,
    channels: int,
    dtype: npt.DTypeLike,
    max_voxels: int,
    max_bytes: int,
) -> None:
    """Raise :class:`TooLarge` for a block over either limit, before anything is read or allocated.

    Parameters
    ----------
    size_xyz
        The block's size (x, y, z) in voxels (any order: only the product counts).
    channels
        Channels per voxel.
    dtype
        The dtype of the block as it is handed out (the layer's, or float32 when normalised).
    max_voxels, max_bytes
        The limits (:attr:`blockio.config.Settings.max_block_voxels` and ``max_block_bytes``).
    """
    voxels = math.prod(int(s) for s in size_xyz)
    itemsize: Any = np.dtype(dtype).itemsize
    nbytes = voxels * int(channels) * int(itemsize)
    if voxels > max_voxels or nbytes > max_bytes:
        shape = "x".join(str(int(s)) for s in size_xyz)
        raise TooLarge(
            f"block of {voxels} voxels ({shape}) x {channels} channel(s) of {np.dtype(dtype).name} is {nbytes} bytes, "
            f"which exceeds the limit of {max_voxels} voxels / {max_bytes} bytes; request smaller blocks"
        )
