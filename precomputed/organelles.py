"""Organelles of the synthetic EM volume: dark mitochondria and vesicle rings inside cells."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["organelle_darkness", "organelles", "z_span"]

_ORGANELLES_PER_CELL = 2.5
_VESICLE_CLUSTER_FRACTION = 0.3
_ORGANELLE_MARGIN = 1.3  # bounding box, in semi-axes: room for the soft rim


@dataclass(frozen=True)
class _Organelle:
    """A dark ellipsoid (mitochondrion) or ring (vesicle) inside one cell."""

    center: NDArray[np.float64]  # (x, y, z) nm
    inverse_axes: NDArray[np.float64]  # 3x3: |inverse_axes @ d| == 1 on the surface
    half_extent: NDArray[np.float64]  # (x, y, z) nm of the bounding box
    cell: int  # seed index the organelle belongs to
    fill: float  # darkening inside, 0..1
    rim: float  # extra darkening on the surface, 0..1


def _random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    """A uniformly random 3x3 rotation matrix."""
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    return q * np.sign(np.diag(r))


def organelles(
    seeds: NDArray[np.float64], spacing: float, rng: np.random.Generator
) -> list[_Organelle]:
    """Mitochondria (dark ellipsoids) and vesicle clusters (small rings) per cell."""
    found: list[_Organelle] = []
    for cell, centre in enumerate(seeds):
        for _ in range(rng.poisson(_ORGANELLES_PER_CELL)):
            # Short and wide, elongated along a random direction, as mitochondria are.
            width = rng.uniform(0.05, 0.09) * spacing
            semi = np.array([rng.uniform(2.0, 4.0) * width, width, width * rng.uniform(0.8, 1.2)])
            rotation = _random_rotation(rng)
            where = centre + rng.uniform(-0.25, 0.25, 3) * spacing
            half = np.linalg.norm(rotation * semi, axis=1)  # rows of R diag(semi)
            found.append(_Organelle(where, (rotation / semi).T, half, cell, 0.4, 0.25))
        if rng.random() < _VESICLE_CLUSTER_FRACTION:
            cluster = centre + rng.uniform(-0.25, 0.25, 3) * spacing
            for _ in range(rng.integers(15, 40)):
                radius = rng.uniform(18.0, 25.0)
                where = cluster + rng.normal(0.0, 0.06 * spacing, 3)
                half = np.full(3, radius)
                found.append(_Organelle(where, np.eye(3) / radius, half, cell, 0.0, 0.45))
    return found


def z_span(organelle: _Organelle, voxel_z: float) -> tuple[int, int]:
    """Sections ``[first, last + 1)`` an organelle may reach."""
    reach = organelle.half_extent[2] * _ORGANELLE_MARGIN
    first = math.floor((organelle.center[2] - reach) / voxel_z - 0.5)
    return first, math.ceil((organelle.center[2] + reach) / voxel_z - 0.5) + 1


def organelle_darkness(
    organelles: list[_Organelle],
    near: NDArray[np.intp],
    z0: int,
    voxel_size: tuple[float, float, float],
) -> NDArray[np.float32]:
    """Darkening ``[z, y, x]`` in 0..1 of a slab starting at section ``z0``."""
    dark = np.zeros(near.shape, dtype=np.float32)
    size = np.asarray(voxel_size)
    extent = np.array(near.shape[::-1])  # (x, y, z) of the slab
    first = np.array([0, 0, z0])
    for org in organelles:
        reach = org.half_extent * _ORGANELLE_MARGIN
        lo = np.maximum(np.floor((org.center - reach) / size - 0.5).astype(int) - first, 0)
        hi = np.minimum(np.ceil((org.center + reach) / size - 0.5).astype(int) + 1 - first, extent)
        if np.any(hi <= lo):
            continue
        # Offsets from the centre in nm along x, y, z, and the quadratic form
        # |M d|**2 (1 on the surface) summed from its six terms on open grids.
        dx, dy, dz = (
            ((np.arange(lo[a], hi[a]) + first[a] + 0.5) * size[a] - org.center[a]).astype(
                np.float32
            )
            for a in range(3)
        )
        q = org.inverse_axes.T @ org.inverse_axes
        form = (q[2, 2] * dz * dz)[:, None, None] + (q[1, 1] * dy * dy)[None, :, None]
        form = form + (q[0, 0] * dx * dx)[None, None, :]
        form += (2 * q[0, 1] * dy)[None, :, None] * dx[None, None, :]
        form += (2 * q[0, 2] * dz)[:, None, None] * dx[None, None, :]
        form += (2 * q[1, 2] * dz)[:, None, None] * dy[None, :, None]
        radius = np.sqrt(form, out=form)
        radius -= np.float32(1.0)
        shade = org.fill / (1.0 + np.exp(radius / np.float32(0.08)))
        shade += org.rim * np.exp(-((radius / np.float32(0.2)) ** 2))
        box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        np.minimum(shade, np.float32(0.8), out=shade)
        shade *= near[box] == org.cell
        np.maximum(dark[box], shade, out=dark[box])
    return dark
