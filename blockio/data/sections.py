"""Blank and saturated sections: finding them, and filling them from their neighbours."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from blockio.data.block_checks import TransformError, _as_block, _channels

__all__ = ["BadSlices", "find_bad_slices", "interpolate_slices"]


@dataclass(frozen=True)
class BadSlices:
    """Indices of bad z slices of a block, each tuple sorted ascending.

    A slice may be in both tuples (e.g. an all-255 section in uint8 data).
    """

    blank: tuple[int, ...] = ()
    saturated: tuple[int, ...] = ()

    @property
    def all(self) -> tuple[int, ...]:
        """Every bad slice once, sorted."""
        return tuple(sorted(set(self.blank) | set(self.saturated)))


def find_bad_slices(
    block: ArrayLike,
    *,
    blank_std: float = 1e-6,
    saturated_fraction: float = 0.5,
    saturated_value: float | None = None,
    dtype_max: float | None = None,
) -> BadSlices:
    """Find blank and saturated z slices (sections) of a block.

    Parameters
    ----------
    block
        ``[z, y, x]`` or ``[c, z, y, x]``; for 4-D a slice is bad when it is
        bad in any channel.
    blank_std
        A slice whose standard deviation is below this is blank; a constant
        slice (all zeros, all one value) is always blank.
    saturated_fraction
        A slice is saturated when at least this fraction (0, 1] of its voxels
        equals the saturation value.
    saturated_value
        The saturation value. Default: ``dtype_max``.
    dtype_max
        The largest value of the acquisition dtype (255 for uint8). Default:
        each channel's own maximum in this block; a channel holding a single
        value throughout has no saturated slices then (its slices are blank).

    Returns
    -------
    BadSlices
    """
    array = _channels(_as_block(block))
    if not (math.isfinite(blank_std) and blank_std >= 0):
        raise TransformError(f"blank_std must be finite and >= 0, got {blank_std}")
    if not 0 < saturated_fraction <= 1:
        raise TransformError(f"saturated_fraction must be in (0, 1], got {saturated_fraction}")
    c, z = array.shape[:2]
    if z == 0 or array.size == 0:
        return BadSlices()
    flat = array.reshape(c, z, -1)  # [c, z, y*x]

    lowest, highest = flat.min(axis=-1), flat.max(axis=-1)
    std = flat.std(axis=-1, dtype=np.float64)
    blank = ((lowest == highest) | (std < blank_std)).any(axis=0)

    value = saturated_value if saturated_value is not None else dtype_max
    if value is not None:
        at_value = flat == value
        usable = np.ones(c, dtype=bool)
    else:
        channel_max = highest.max(axis=1)
        at_value = flat == channel_max[:, np.newaxis, np.newaxis]
        usable = channel_max != lowest.min(axis=1)
    fraction = at_value.mean(axis=-1)
    saturated = ((fraction >= saturated_fraction) & usable[:, np.newaxis]).any(axis=0)

    return BadSlices(
        blank=tuple(int(i) for i in np.flatnonzero(blank)),
        saturated=tuple(int(i) for i in np.flatnonzero(saturated)),
    )


def interpolate_slices(block: ArrayLike, bad: Sequence[int]) -> NDArray[np.float32]:
    """Replace bad z slices by linear interpolation between good neighbours.

    Each bad slice becomes the distance-weighted mean of the nearest good
    slices below and above it; at the top or bottom of the block, where only
    one side has a good slice, that slice is copied. Good slices are returned
    unchanged (as ``float32``).

    Parameters
    ----------
    block
        ``[z, y, x]`` or ``[c, z, y, x]``.
    bad
        z indices, ``0 <= i < z``; duplicates are allowed.

    Returns
    -------
    numpy.ndarray
        ``float32``, same shape as ``block``.

    Raises
    ------
    TransformError
        On an index out of range, or when every slice is bad.
    """
    array = _as_block(block)
    out = array.astype(np.float32)  # always a copy
    z = array.shape[-3]
    indices = list(bad)
    if any(isinstance(i, (bool, np.bool_)) or not isinstance(i, (int, np.integer)) for i in indices):
        raise TransformError(f"bad z indices must be integers, got {indices!r}")
    bad_z = np.unique(np.asarray(indices, dtype=np.intp))
    if bad_z.size == 0:
        return out
    if bad_z[0] < 0 or bad_z[-1] >= z:
        raise TransformError(f"bad z indices must lie in [0, {z}), got {bad_z.tolist()}")
    good_z = np.setdiff1d(np.arange(z), bad_z)
    if good_z.size == 0:
        raise TransformError(f"all {z} z slices are bad; nothing to interpolate from")

    # nearest good slice below (clamped to the first good one) and above
    right = np.searchsorted(good_z, bad_z)
    above = good_z[np.minimum(right, good_z.size - 1)]
    below = good_z[np.maximum(right - 1, 0)]
    span = above - below
    weight = np.divide(
        bad_z - below, span, out=np.zeros(bad_z.shape, dtype=np.float64), where=span > 0
    )
    weight = weight.astype(np.float32)[:, np.newaxis, np.newaxis]

    volume = _channels(out)
    volume[:, bad_z] = (1 - weight) * volume[:, below] + weight * volume[:, above]
    return out
