"""Anisotropy-aware multiscale pyramids.

A pyramid is planned from the mip-0 shape and voxel size: an axis whose
voxels are finer than the coarsest axis by more than sqrt(2) is halved alone
(2x2x1 for typical serial-section EM), until the voxels are near-isotropic,
then all axes are halved together (2x2x2), as igneous does. Levels are added
until one fits in a single chunk.

Averaging is exact and local: a voxel of mip ``k+1`` is the mean of the (up
to ``fx*fy*fz``) voxels of mip ``k`` it covers, so a pyramid computed block by
block over chunk-aligned boxes equals the one computed from the whole volume.
tinybrain is not used: its 2x2x1 path zero-fills the last column of odd-sized
arrays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .geometry import Xyz, ceil_div, xyz, xyz_float

__all__ = ["Mip", "downsample_average", "downsample_mode", "plan_pyramid"]


@dataclass(frozen=True)
class Mip:
    """One pyramid level: ``shape`` and ``voxel_size`` are (x, y, z).

    ``factor`` is the (x, y, z) factor from the previous level, ``(1, 1, 1)``
    for mip 0.
    """

    level: int
    shape: Xyz
    voxel_size: tuple[float, float, float]
    factor: Xyz


def next_factor(voxel_size: tuple[float, float, float], shape: Xyz) -> Xyz:
    """The (x, y, z) factor for the next level: halve the fine axes first.

    Axes already down to one voxel take no part (a single section stays one).
    """
    live = [n > 1 for n in shape]
    if not any(live):
        return (1, 1, 1)
    coarsest = max(v for v, ok in zip(voxel_size, live) if ok)
    fine = [ok and v * math.sqrt(2) < coarsest for v, ok in zip(voxel_size, live)]
    if not any(fine):
        fine = live
    return xyz(2 if f else 1 for f in fine)


def plan_pyramid(
    shape: Xyz,
    voxel_size: tuple[float, float, float],
    chunk_size: Xyz,
    *,
    max_mips: int | None = None,
) -> list[Mip]:
    """Plan the levels of a pyramid.

    Parameters
    ----------
    shape, voxel_size, chunk_size
        (x, y, z) of mip 0; voxel size in nm.
    max_mips
        Stop after this many levels (mip 0 included); ``None`` continues until
        a level fits in one chunk.
    """
    mips = [Mip(0, xyz(shape), xyz_float(float(v) for v in voxel_size), (1, 1, 1))]
    while max_mips is None or len(mips) < max_mips:
        last = mips[-1]
        if all(n <= c for n, c in zip(last.shape, chunk_size)):
            break
        factor = next_factor(last.voxel_size, last.shape)
        if factor == (1, 1, 1):
            break
        mips.append(
            Mip(
                last.level + 1,
                xyz(ceil_div(n, f) for n, f in zip(last.shape, factor)),
                xyz_float(v * f for v, f in zip(last.voxel_size, factor)),
                factor,
            )
        )
    return mips


def _blocks(arr: npt.NDArray[Any], factor_zyx: tuple[int, int, int]) -> tuple[npt.NDArray[Any], tuple[int, ...]]:
    """Reshape ``[c, z, y, x]`` into ``[c, Z, fz, Y, fy, X, fx]``, padding odd edges with zeros.

    Returns the reshaped array and the per-axis amount of padding (z, y, x).
    """
    c = arr.shape[0]
    pads = tuple((-n) % f for n, f in zip(arr.shape[1:], factor_zyx))
    if any(pads):
        arr = np.pad(arr, ((0, 0),) + tuple((0, p) for p in pads))
    z, y, x = arr.shape[1:]
    fz, fy, fx = factor_zyx
    return arr.reshape(c, z // fz, fz, y // fy, fy, x // fx, fx), pads


def _counts(shape_zyx: tuple[int, ...], factor_zyx: tuple[int, int, int]) -> npt.NDArray[np.int64]:
    """How many real voxels each output voxel averages (fewer at odd edges)."""
    per_axis = []
    for n, f in zip(shape_zyx, factor_zyx):
        m = ceil_div(n, f)
        cnt = np.full(m, f, dtype=np.int64)
        if n % f:
            cnt[-1] = n % f
        per_axis.append(cnt)
    return per_axis[0][:, None, None] * per_axis[1][None, :, None] * per_axis[2][None, None, :]


def _accumulator(dtype: np.dtype[Any]) -> type:
    if not np.issubdtype(dtype, np.integer):
        return np.float64
    if np.issubdtype(dtype, np.signedinteger):
        return np.int64
    return np.uint64 if dtype.itemsize >= 4 else np.uint32


def downsample_average(arr: npt.NDArray[Any], factor: Xyz) -> npt.NDArray[Any]:
    """Average-pool a C-order ``[c, z, y, x]`` array by an (x, y, z) factor.

    Integer outputs round half up; floats are averaged in float64 and cast
    back. Odd edges average the voxels that exist. Sums are built from
    strided slices (no reshape of the whole block), which is several times
    faster than a reshape-and-mean and uses one accumulator-sized buffer.
    """
    fx, fy, fz = factor
    fzyx = (fz, fy, fx)
    acc = _accumulator(arr.dtype)
    total: npt.NDArray[Any] | None = None
    src: npt.NDArray[Any] = arr
    for axis, f in ((1, fz), (2, fy), (3, fx)):
        if f == 1:
            continue
        pad = (-src.shape[axis]) % f
        if pad:
            widths = [(0, 0)] * 4
            widths[axis] = (0, pad)
            src = np.pad(src, widths)
        parts = [src[(slice(None),) * axis + (slice(k, None, f),)] for k in range(f)]
        summed: npt.NDArray[Any] = parts[0].astype(acc)
        for part in parts[1:]:
            np.add(summed, part, out=summed, casting="unsafe")
        src = total = summed
    if total is None:
        return arr.copy()
    if any(n % f for n, f in zip(arr.shape[1:], fzyx)):
        count: npt.NDArray[Any] | int = _counts(arr.shape[1:], fzyx)
    else:
        count = fx * fy * fz
    if np.issubdtype(arr.dtype, np.integer):
        np.add(total, np.asarray(count) // 2, out=total, casting="unsafe")
        np.floor_divide(total, count, out=total, casting="unsafe")
        return total.astype(arr.dtype)
    return (total / count).astype(arr.dtype)


def downsample_mode(arr: npt.NDArray[Any], factor: Xyz) -> npt.NDArray[Any]:
    """Mode-pool a label array ``[c, z, y, x]`` by an (x, y, z) factor.

    Ties go to the smallest label; the padding of odd edges never wins.
    """
    fx, fy, fz = factor
    c, z, y, x = arr.shape
    if not (z % fz or y % fy or x % fx):
        return _mode_even(arr, (fz, fy, fx))
    blocks, pads = _blocks(arr, (fz, fy, fx))
    # [c, Z, Y, X, f] with the window's voxels last
    win = blocks.transpose(0, 1, 3, 5, 2, 4, 6).reshape(c, blocks.shape[1], blocks.shape[3], blocks.shape[5], -1)
    mask = np.ones((z + pads[0], y + pads[1], x + pads[2]), dtype=bool)
    mask[z:, :, :] = False
    mask[:, y:, :] = False
    mask[:, :, x:] = False
    mask = mask.reshape(blocks.shape[1], fz, blocks.shape[3], fy, blocks.shape[5], fx)
    mask = mask.transpose(0, 2, 4, 1, 3, 5).reshape(blocks.shape[1], blocks.shape[3], blocks.shape[5], -1)
    # padding becomes the window's max so it sorts last; runs are cut at the valid count
    if any(pads):
        vals = np.where(mask, win, win.max(axis=-1, keepdims=True))
        nvalid = np.broadcast_to(mask.sum(axis=-1), vals.shape[:-1])
    else:
        vals = win
        nvalid = None
    out = vals[..., 0].copy()
    # most windows of a segmentation hold one label: only the others need sorting (several
    # times faster on label volumes, and the same answer by construction)
    mixed = (vals != vals[..., :1]).any(axis=-1)
    if mixed.any():
        out[mixed] = _mode_rows(vals[mixed], None if nvalid is None else nvalid[mixed])
    return np.ascontiguousarray(out)


def _mode_even(arr: npt.NDArray[Any], factor_zyx: tuple[int, int, int]) -> npt.NDArray[Any]:
    """Mode pooling of an array whose shape the factor divides, from strided views (no window copy)."""
    fz, fy, fx = factor_zyx
    views = [arr[:, dz::fz, dy::fy, dx::fx] for dz in range(fz) for dy in range(fy) for dx in range(fx)]
    first = views[0]
    mixed = np.zeros(first.shape, dtype=bool)
    for view in views[1:]:
        mixed |= view != first
    out = np.array(first, order="C")  # a copy: never write into the caller's array
    if mixed.any():
        out[mixed] = _mode_rows(np.stack([view[mixed] for view in views], axis=-1), None)
    return out


def _mode_rows(rows: npt.NDArray[Any], nvalid: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
    """The mode of each row (smallest on ties), counting only its first ``nvalid`` sorted values."""
    srt = np.sort(rows, axis=-1)
    n = srt.shape[-1]
    # run lengths of equal values in each sorted row
    starts = np.ones(srt.shape, dtype=bool)
    starts[:, 1:] = srt[:, 1:] != srt[:, :-1]
    idx = np.arange(n)
    start_pos = np.maximum.accumulate(np.where(starts, idx, 0), axis=-1)
    run_len = idx - start_pos + 1
    if nvalid is not None:
        run_len = np.where(idx < nvalid[:, None], run_len, 0)
    best = run_len.argmax(axis=-1)
    # argmax returns the end of the first longest run: the smallest label among ties
    return np.take_along_axis(srt, best[:, None], axis=-1)[:, 0]
