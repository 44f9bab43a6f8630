"""Patches at one physical voxel size, from whichever mip of a dataset is nearest.

A :class:`TargetGrid` maps one dataset onto a grid of *target* voxels of
``target`` nm (x, y, z). Target voxel ``j`` along an axis covers
``[j * t, (j + 1) * t)`` nm, source voxel ``k`` of a mip of ``v`` nm covers
``[k * v, (k + 1) * v)`` nm (voxels are cells, as in ``scipy.ndimage.zoom``
with ``grid_mode=True``), so a patch at target offset ``o`` samples the
source at the continuous coordinates ``(o + j + 0.5) * t / v - 0.5``.

**Which mip** (:func:`choose_mip`): the coarsest mip that is nowhere coarser
than the target, i.e. whose voxel size is ``<= max(target, mip 0's)`` on every
axis. Nothing finer than needed is read; an axis already coarser than the
target at mip 0 (z of serial-section EM read at an isotropic target) stays at
its finest and is interpolated up.

**Images** are resampled like :class:`blockio.data.transforms.Resample`
(linear, ``order=1``). Where the source is finer than the target on an axis
(a shrink by ``s = t / v > 1``), the block is first smoothed with a Gaussian
of ``(s - 1) / 2`` source voxels on that axis, as
``skimage.transform.resize(anti_aliasing=True)`` does, since interpolation
alone aliases. The box read has a margin (:data:`MARGIN` voxels plus the
Gaussian's reach), so voxels at the patch edge are interpolated and smoothed
from their real neighbours. **Labels** take the source voxel holding each
target voxel's centre (nearest; ids are copied, never interpolated).

Offsets and sizes are (x, y, z); arrays are C-order ``[c, z, y, x]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.boxes import VoxelBox, Xyz
from blockio.errors import InvalidRequest
from precomputed.geometry import xyz, xyz_float

__all__ = ["MARGIN", "TargetGrid", "choose_mip", "parse_voxel_size"]

Nm = tuple[float, float, float]
MARGIN = 1
"""Source voxels read beyond the interpolation's reach on each side of a patch."""
_TOLERANCE = 1e-6  # relative: 8.000000001 nm is 8 nm


def parse_voxel_size(value: Any, name: str = "voxel_size") -> Nm:
    """Three finite positive numbers (x, y, z) in nm, or an :class:`InvalidRequest`."""
    if isinstance(value, (str, bytes)):
        value = str(value if isinstance(value, str) else value.decode()).split(",")
    try:
        x, y, z = (float(v) for v in value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"{name} must be three numbers (x, y, z) in nm, got {value!r}") from None
    if not all(math.isfinite(v) and v > 0 for v in (x, y, z)):
        raise InvalidRequest(f"{name} must be finite and positive (nm), got {[x, y, z]}")
    return (x, y, z)


def choose_mip(mip_voxel_sizes: Sequence[Sequence[float]], target: Nm) -> int:
    """The coarsest mip whose voxel size is ``<= max(target, mip 0's)`` on every axis (see the module)."""
    finest = mip_voxel_sizes[0]
    limit = [max(t, float(f)) * (1 + _TOLERANCE) for t, f in zip(target, finest)]
    chosen = 0
    for level, size in enumerate(mip_voxel_sizes):
        if all(float(v) <= lim for v, lim in zip(size, limit)):
            chosen = level
    return chosen


@dataclass(frozen=True)
class TargetGrid:
    """One dataset's mip ``mip`` (``voxel_size`` nm, ``bounds``) seen on a grid of ``target`` nm voxels.

    ``extent_nm`` is the physical ``[start, stop)`` of the volume in nm
    (x, y, z), from mip 0, whose voxels are whole (coarser mips round up).
    """

    mip: int
    voxel_size: Nm
    target: Nm
    bounds: VoxelBox
    extent_nm: tuple[Nm, Nm]

    @classmethod
    def of(cls, mips: Sequence[dict[str, Any]], mip0_bounds: VoxelBox, bounds_at: Any, target: Nm) -> TargetGrid:
        """The grid of a record's ``mips``; ``bounds_at(mip)`` gives a mip's (x, y, z) bounds."""
        mip = choose_mip([m["voxel_size"] for m in mips], target)
        v0 = [float(v) for v in mips[0]["voxel_size"]]
        lo = tuple(s * v for s, v in zip(mip0_bounds.start, v0))
        hi = tuple(s * v for s, v in zip(mip0_bounds.stop, v0))
        size = tuple(float(v) for v in mips[mip]["voxel_size"])
        return cls(mip, size, target, bounds_at(mip), (lo, hi))  # type: ignore[arg-type]

    @property
    def scale(self) -> Nm:
        """Source voxels per target voxel, (x, y, z)."""
        return xyz_float(t / v for t, v in zip(self.target, self.voxel_size))

    @property
    def sigma(self) -> Nm:
        """The anti-aliasing Gaussian's sigma in source voxels (x, y, z): ``(s - 1) / 2`` where ``s > 1``."""
        return xyz_float(max(0.0, (s - 1.0) / 2.0) if s > 1 + _TOLERANCE else 0.0 for s in self.scale)

    def target_bounds(self) -> VoxelBox:
        """The target voxels (x, y, z) that lie wholly inside the volume (at least one per axis)."""
        start = [math.ceil(lo / t - _TOLERANCE) for lo, t in zip(self.extent_nm[0], self.target)]
        stop = [max(a + 1, math.floor(hi / t + _TOLERANCE)) for a, hi, t in zip(start, self.extent_nm[1], self.target)]
        return VoxelBox(xyz(start), xyz(stop))

    def _coordinates(self, offset: Xyz, size: Xyz) -> list[npt.NDArray[np.float64]]:
        # per axis (x, y, z): the physical centre of each target voxel, in source voxels
        return [(o + np.arange(p, dtype=np.float64) + 0.5) * s for o, p, s in zip(offset, size, self.scale)]

    def source_box(self, offset: Xyz, size: Xyz) -> VoxelBox:
        """The (x, y, z) box of the source mip to read for the patch at ``offset``, ``size`` (target voxels), margin included."""
        start, stop = [], []
        for centres, sigma in zip(self._coordinates(offset, size), self.sigma):
            reach = MARGIN + int(4.0 * sigma + 0.5)  # gaussian_filter's radius at truncate=4
            start.append(math.floor(centres[0] - 0.5) - reach)
            stop.append(math.floor(centres[-1] - 0.5) + 2 + reach)
        return VoxelBox(tuple(start), tuple(stop))

    def resample_image(self, block: npt.NDArray[Any], box: VoxelBox, offset: Xyz, size: Xyz) -> npt.NDArray[np.float32]:
        """``[c, z, y, x]`` float32 at the target voxel size from the source ``block`` read at ``box``."""
        import scipy.ndimage as ndi  # here: importing blockio.data stays light
        data = block.astype(np.float32, copy=False)
        sigma_zyx = tuple(reversed(self.sigma))
        scale_zyx = tuple(reversed(self.scale))
        shift_zyx = tuple((o + 0.5) * s - 0.5 - b for o, s, b in zip(reversed(offset), scale_zyx, reversed(box.start)))
        out = np.empty((data.shape[0], *reversed(size)), dtype=np.float32)
        for c in range(data.shape[0]):
            channel = data[c]
            if any(sigma_zyx):
                channel = ndi.gaussian_filter(channel, sigma=sigma_zyx, mode="nearest", truncate=4.0)
            # a diagonal matrix: scipy interpolates axis by axis (separable linear), output j -> input scale * j + shift
            ndi.affine_transform(channel, np.asarray(scale_zyx), offset=shift_zyx, output_shape=out.shape[1:], output=out[c], order=1, mode="nearest", prefilter=False)
        return out

    def resample_labels(self, block: npt.NDArray[Any], box: VoxelBox, offset: Xyz, size: Xyz) -> npt.NDArray[Any]:
        """``[..., z, y, x]`` labels at the target voxel size: the source voxel under each target voxel's centre."""
        index = [
            np.clip(np.floor(centres).astype(np.intp) - b, 0, n - 1)
            for centres, b, n in zip(self._coordinates(offset, size), box.start, box.size)
        ]
        x, y, z = index
        picked: npt.NDArray[Any] = block[..., z[:, None, None], y[None, :, None], x[None, None, :]]
        return picked

    def inside(self, offset: Xyz, size: Xyz) -> npt.NDArray[np.bool_]:
        """Bool ``[z, y, x]``: True for target voxels whose centre lies inside the volume."""
        flags = [
            ((o + np.arange(p) + 0.5) * t >= lo) & ((o + np.arange(p) + 0.5) * t < hi)
            for o, p, t, lo, hi in zip(offset, size, self.target, *self.extent_nm)
        ]
        x, y, z = flags
        inside: npt.NDArray[np.bool_] = z[:, None, None] & y[None, :, None] & x[None, None, :]
        return inside
