"""Preprocessing transforms applied to blocks before they reach a model.

Every function takes a C-order block ``[z, y, x]`` or ``[c, z, y, x]`` (a 4-D
block is processed channel by channel), never modifies its input, and returns
a new ``float32`` array unless its docstring says otherwise. Voxel sizes and
sigmas are ``(x, y, z)`` in nanometres, as everywhere in blockio; they are
reversed to the array's ``[z, y, x]`` axis order internally.

The frozen dataclasses at the end (`GaussianSmooth`, `Resample`,
`ClipOutliers`, `RepairSlices`) wrap the functions as callables
``transform(block, voxel_size) -> block`` for datasets, and `Compose` chains
them, handing each one the voxel size the previous one produced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.ndimage as ndi
from numpy.typing import ArrayLike, NDArray

from blockio.data.block_checks import TransformError, _as_block
from blockio.data.sections import BadSlices, find_bad_slices, interpolate_slices

__all__ = [
    "BadSlices",
    "BlockTransform",
    "ClipOutliers",
    "Compose",
    "GaussianSmooth",
    "RepairSlices",
    "Resample",
    "TransformError",
    "clip_outliers",
    "find_bad_slices",
    "gaussian_smooth",
    "interpolate_slices",
    "resample",
]

VoxelSize = tuple[float, float, float]


def _triple(value: Any, name: str) -> VoxelSize:
    if isinstance(value, (str, bytes)) or np.ndim(value) != 1 or len(value) != 3:
        raise TransformError(f"{name} must be three numbers (x, y, z), got {value!r}")
    try:
        x, y, z = (float(v) for v in value)
    except (TypeError, ValueError):
        raise TransformError(f"{name} must be three numbers (x, y, z), got {value!r}") from None
    return (x, y, z)


def _voxel_size(value: Any, name: str = "voxel_size") -> VoxelSize:
    size = _triple(value, name)
    if not all(math.isfinite(v) and v > 0 for v in size):
        raise TransformError(f"{name} must be finite and positive (nm), got {size}")
    return size


def _sigma_nm(value: Any) -> VoxelSize:
    if np.ndim(value) == 0 and not isinstance(value, (str, bytes)):
        try:
            value = (float(value),) * 3
        except (TypeError, ValueError):
            raise TransformError(f"sigma_nm must be a number or (x, y, z), got {value!r}") from None
    sigma = _triple(value, "sigma_nm")
    if not all(math.isfinite(v) and v >= 0 for v in sigma):
        raise TransformError(f"sigma_nm must be finite and non-negative, got {sigma}")
    return sigma


def _check_order(order: Any) -> None:
    if isinstance(order, (bool, np.bool_)) or not isinstance(order, (int, np.integer)):
        raise TransformError(f"order must be an integer from 0 to 5, got {order!r}")
    if not 0 <= order <= 5:
        raise TransformError(f"order must be an integer from 0 to 5, got {order!r}")


def _zyx(values: Sequence[float], ndim: int) -> tuple[float, ...]:
    """Per-array-axis sigmas: (x, y, z) reversed, with 0 (no smoothing) for channels."""
    return (0.0,) * (ndim - 3) + tuple(values)[::-1]


# -- smoothing, resampling, clipping --------------------------------------------


def gaussian_smooth(
    block: ArrayLike,
    sigma_nm: float | tuple[float, float, float],
    voxel_size: tuple[float, float, float],
) -> NDArray[np.float32]:
    """Smooth a block with a Gaussian whose width is given in nanometres.

    Parameters
    ----------
    block
        ``[z, y, x]`` or ``[c, z, y, x]``; channels are smoothed separately.
    sigma_nm
        Standard deviation in nm, one number for all axes or ``(x, y, z)``.
        ``0`` on an axis leaves that axis unsmoothed.
    voxel_size
        ``(x, y, z)`` in nm. Each sigma is divided by its axis' voxel size, so
        anisotropic data (large z voxels) get a smaller sigma in z voxels.

    Returns
    -------
    numpy.ndarray
        ``float32``, same shape as ``block``; edges handled by reflection.
    """
    array = _as_block(block)
    sigma = _sigma_nm(sigma_nm)
    size = _voxel_size(voxel_size)
    sigma_voxels = tuple(s / v for s, v in zip(sigma, size, strict=True))
    smoothed: NDArray[np.float32] = ndi.gaussian_filter(
        array, sigma=_zyx(sigma_voxels, array.ndim), mode="reflect", output=np.float32
    )
    return smoothed


def resample(
    block: ArrayLike,
    voxel_size: tuple[float, float, float],
    target_voxel_size: tuple[float, float, float],
    *,
    order: int = 1,
    labels: bool = False,
) -> NDArray[Any]:
    """Resample a block from one voxel size to another.

    Each spatial axis of ``n`` voxels becomes ``round(n * voxel / target)``
    voxels (at least 1) spanning the same physical extent; voxels are treated
    as cells, so output voxel centres sit at their true physical positions
    (``scipy.ndimage.zoom`` with ``grid_mode=True``).

    ``zoom`` interpolates but does not low-pass filter, so shrinking by a
    large factor aliases. Callers should therefore read the nearest mip whose
    voxel size is coarser than or equal to the target on every axis (mips are
    averaged, or mode-pooled for segmentation, when the pyramid is built) and
    resample only the remaining step with this function.

    Parameters
    ----------
    block
        ``[z, y, x]`` or ``[c, z, y, x]``; channels are resampled separately.
    voxel_size, target_voxel_size
        ``(x, y, z)`` in nm.
    order
        Spline order 0-5 for images (1: linear).
    labels
        Segmentation labels: nearest neighbour, original dtype kept, and
        ``order`` ignored. Label IDs are copied by index, never through
        floating point, so 64-bit IDs stay exact.

    Returns
    -------
    numpy.ndarray
        ``float32`` for images, ``block.dtype`` for labels.
    """
    array = _as_block(block)
    source = _voxel_size(voxel_size)
    target = _voxel_size(target_voxel_size, "target_voxel_size")
    _check_order(order)
    spatial_in = array.shape[-3:]
    factors = [s / t for s, t in zip(source, target, strict=True)][::-1]  # [z, y, x]
    spatial_out = tuple(
        max(1, math.floor(n * f + 0.5)) if n else 0
        for n, f in zip(spatial_in, factors, strict=True)
    )
    if array.size == 0:
        return np.zeros(array.shape[:-3] + spatial_out, array.dtype if labels else np.float32)
    if labels:
        # cell centre of each output voxel -> the input voxel containing it
        index = [
            np.minimum((np.arange(m) + 0.5) * n / m, n - 1).astype(np.intp)
            for n, m in zip(spatial_in, spatial_out, strict=True)
        ]
        return array[(..., *np.ix_(*index))].copy()
    exact = (1.0,) * (array.ndim - 3) + tuple(
        m / n if n else 1.0 for n, m in zip(spatial_in, spatial_out, strict=True)
    )
    zoomed: NDArray[Any] = ndi.zoom(
        array, exact, output=np.float32, order=int(order), mode="reflect", grid_mode=True
    )
    return zoomed


def clip_outliers(block: ArrayLike, low: float, high: float) -> NDArray[np.float32]:
    """Clip intensities to ``[low, high]``, e.g. the catalog's 0.5 and 99.5 percentiles.

    Parameters
    ----------
    block
        ``[z, y, x]`` or ``[c, z, y, x]``.
    low, high
        Bounds, ``low < high``.

    Returns
    -------
    numpy.ndarray
        ``float32``, same shape as ``block``.
    """
    array = _as_block(block)
    lo, hi = float(low), float(high)
    if not lo < hi:
        raise TransformError(f"clip bounds need low < high, got low={lo}, high={hi}")
    return np.clip(array.astype(np.float32), lo, hi)


# -- composable callables ---------------------------------------------------------


class BlockTransform:
    """Base of the dataset transforms: ``transform(block, voxel_size) -> block``."""

    def __call__(self, block: ArrayLike, voxel_size: tuple[float, float, float]) -> NDArray[Any]:
        raise NotImplementedError

    def output_voxel_size(self, voxel_size: tuple[float, float, float]) -> VoxelSize:
        """The ``(x, y, z)`` voxel size in nm of the block this transform returns."""
        return _voxel_size(voxel_size)


@dataclass(frozen=True)
class GaussianSmooth(BlockTransform):
    """`gaussian_smooth` with a fixed sigma in nm (one number or ``(x, y, z)``)."""

    sigma_nm: float | tuple[float, float, float]

    def __post_init__(self) -> None:
        _sigma_nm(self.sigma_nm)

    def __call__(
        self, block: ArrayLike, voxel_size: tuple[float, float, float]
    ) -> NDArray[np.float32]:
        return gaussian_smooth(block, self.sigma_nm, voxel_size)


@dataclass(frozen=True)
class Resample(BlockTransform):
    """`resample` to a fixed ``(x, y, z)`` target voxel size in nm."""

    target_voxel_size: tuple[float, float, float]
    order: int = 1
    labels: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "target_voxel_size", _voxel_size(self.target_voxel_size, "target_voxel_size")
        )
        _check_order(self.order)

    def __call__(self, block: ArrayLike, voxel_size: tuple[float, float, float]) -> NDArray[Any]:
        return resample(
            block, voxel_size, self.target_voxel_size, order=self.order, labels=self.labels
        )

    def output_voxel_size(self, voxel_size: tuple[float, float, float]) -> VoxelSize:
        _voxel_size(voxel_size)
        return self.target_voxel_size


@dataclass(frozen=True)
class ClipOutliers(BlockTransform):
    """`clip_outliers` to fixed bounds ``low < high``."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not float(self.low) < float(self.high):
            raise TransformError(
                f"clip bounds need low < high, got low={self.low}, high={self.high}"
            )

    def __call__(
        self, block: ArrayLike, voxel_size: tuple[float, float, float]
    ) -> NDArray[np.float32]:
        return clip_outliers(block, self.low, self.high)


@dataclass(frozen=True, kw_only=True)
class RepairSlices(BlockTransform):
    """`find_bad_slices` then `interpolate_slices`; options as in `find_bad_slices`.

    A block whose slices are all bad raises `TransformError`.
    """

    blank_std: float = 1e-6
    saturated_fraction: float = 0.5
    saturated_value: float | None = None
    dtype_max: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.blank_std) and self.blank_std >= 0):
            raise TransformError(f"blank_std must be finite and >= 0, got {self.blank_std}")
        if not 0 < self.saturated_fraction <= 1:
            raise TransformError(
                f"saturated_fraction must be in (0, 1], got {self.saturated_fraction}"
            )

    def __call__(
        self, block: ArrayLike, voxel_size: tuple[float, float, float]
    ) -> NDArray[np.float32]:
        bad = find_bad_slices(
            block,
            blank_std=self.blank_std,
            saturated_fraction=self.saturated_fraction,
            saturated_value=self.saturated_value,
            dtype_max=self.dtype_max,
        )
        return interpolate_slices(block, bad.all)


Transform = Callable[[Any, tuple[float, float, float]], Any]


@dataclass(frozen=True)
class Compose(BlockTransform):
    """Apply transforms in order, passing each the voxel size the previous one produced.

    Any callable ``f(block, voxel_size) -> block`` may be given; one without an
    ``output_voxel_size`` method is taken to keep the voxel size.
    """

    transforms: Sequence[Transform]

    def __post_init__(self) -> None:
        transforms = tuple(self.transforms)
        for t in transforms:
            if not callable(t):
                raise TransformError(f"Compose needs callables, got {t!r}")
        object.__setattr__(self, "transforms", transforms)

    def __call__(self, block: ArrayLike, voxel_size: tuple[float, float, float]) -> NDArray[Any]:
        size = _voxel_size(voxel_size)
        result: Any = block
        for t in self.transforms:
            result = t(result, size)
            size = _next_voxel_size(t, size)
        return np.asarray(result)

    def output_voxel_size(self, voxel_size: tuple[float, float, float]) -> VoxelSize:
        size = _voxel_size(voxel_size)
        for t in self.transforms:
            size = _next_voxel_size(t, size)
        return size


def _next_voxel_size(transform: Transform, voxel_size: VoxelSize) -> VoxelSize:
    method = getattr(transform, "output_voxel_size", None)
    return voxel_size if method is None else _voxel_size(method(voxel_size))
