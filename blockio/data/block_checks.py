"""Argument checks shared by the block transforms."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from blockio.errors import TransformError  # lives in the one exception tree; importable from here as before

__all__ = ["TransformError"]

# -- argument checks -----------------------------------------------------------


def _as_block(block: ArrayLike) -> NDArray[Any]:
    array = np.asarray(block)
    if array.ndim not in (3, 4):
        raise TransformError(
            f"block must be [z, y, x] or [c, z, y, x], got {array.ndim} dimensions"
        )
    if array.dtype != np.bool_ and not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise TransformError(f"block must hold real numbers, got dtype {array.dtype}")
    return array


def _channels(array: NDArray[Any]) -> NDArray[Any]:
    """A ``[c, z, y, x]`` view of a 3-D or 4-D block."""
    return array if array.ndim == 4 else array[np.newaxis]
