"""The cells of the synthetic EM volume: Voronoi regions of jittered seeds, and their membranes.

Seeds sit on a jittered grid in physical (nm) coordinates, so anisotropic
voxels still give cells that are round in space. A voxel belongs to its
nearest seed; its membrane darkness follows its distance to the facet
between its two nearest seeds (see :func:`slab_cells`). Positions are
``(x, y, z)`` nm; arrays are C-order ``[z, y, x]``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from precomputed.geometry import ceil_div

__all__ = ["HALF_DEPTH", "MEMBRANE_REACH", "MEMBRANE_SIGMA_NM", "jittered_grid", "membrane_width", "slab_cells"]

# The coarse pre-query of _slab_cells.
_JITTER = 0.4  # seed jitter, as a fraction of the grid spacing
_BLOCK = 8  # voxels along x and y of the coarse pre-query
_CANDIDATES = 6  # seeds the coarse pre-query asks for
_INTERIOR, _PAIR, _QUERY = 0, 1, 2  # kinds of block, see slab_cells

MEMBRANE_SIGMA_NM = 12.0
"""Width (nm) of the stained membrane profile, before voxel blur."""
MEMBRANE_REACH = 4.0
"""Widths beyond which a membrane no longer darkens."""
HALF_DEPTH = math.sqrt(2 * math.log(2))
"""Offset, in widths, of half darkness: nearer the facet a voxel is membrane."""


def jittered_grid(
    extent: NDArray[np.float64], spacing: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Seeds ``(n, 3)`` in nm ``(x, y, z)``, one per grid cell, with a margin of one cell.

    The margin keeps the cells at the volume's faces as large as the others.
    """
    axes = [np.arange(-spacing, e + spacing, spacing) + spacing / 2 for e in extent]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    grid = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    return grid + rng.uniform(-_JITTER, _JITTER, grid.shape) * spacing


def slab_cells(
    tree: cKDTree,
    seeds: NDArray[np.float64],
    size_xy: tuple[int, int],
    z_range: tuple[int, int],
    voxel_size: tuple[float, float, float],
) -> tuple[NDArray[np.intp], NDArray[np.float32], NDArray[np.bool_]]:
    """Nearest seed, membrane darkness (0..1) and not-membrane mask of a slab ``[z, y, x]``.

    Querying every voxel would dominate the run time, so the tree is first
    asked about the centre of each block of ``_BLOCK`` x ``_BLOCK`` voxels,
    for its ``_CANDIDATES`` nearest seeds ``s1, s2, ...`` at ``d1, d2, ...``.
    Nothing here is approximate; the triangle inequality decides:

    - interior blocks: the facet of ``s1``'s cell towards ``sj`` is
      ``(dj**2 - d1**2) / (2 |sj - s1|)`` away, and none towards a seed
      beyond the candidates is nearer than ``(dk - d1) / 2``. Where the least
      of these clears the block's radius plus the membrane's reach, the block
      is ``s1``'s cell throughout, free of membrane;
    - two-cell blocks: where the block lies wholly on the side of ``s1`` and
      of ``s2`` of their bisectors with every other seed (the same bounds,
      taken from ``s1`` and from ``s2``), every voxel's two nearest seeds are
      ``s1, s2``, and its facet distance is that to their bisector plane,
      linear in position;
    - the other blocks (near edges where three cells meet) are queried voxel
      by voxel.
    """
    nx, ny = size_xy
    z0, z1 = z_range
    vx, vy, vz = voxel_size
    b = _BLOCK
    nby, nbx = ceil_div(ny, b), ceil_div(nx, b)
    zz, yy, xx = np.meshgrid(
        (np.arange(z0, z1) + 0.5) * vz,
        (np.arange(nby) * b + (b - 1) / 2 + 0.5) * vy,
        (np.arange(nbx) * b + (b - 1) / 2 + 0.5) * vx,
        indexing="ij",
    )
    centres = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    del zz, yy, xx
    distance, index = tree.query(centres, k=min(_CANDIDATES, len(seeds)), workers=-1)
    del centres
    gaps = np.linalg.norm(seeds[index[:, 1:]] - seeds[index[:, :1]], axis=-1)
    facets = (distance[:, 1:] ** 2 - distance[:, :1] ** 2) / (2 * gaps)
    bound = np.minimum(facets.min(axis=1), (distance[:, -1] - distance[:, 0]) / 2)
    radius = (b - 1) / 2 * math.hypot(vx, vy)
    widest = math.hypot(MEMBRANE_SIGMA_NM, 0.5 * math.sqrt(vx * vx + vy * vy + vz * vz))
    kind = np.full(len(index), _QUERY, dtype=np.int8)
    rivals = np.linalg.norm(seeds[index[:, 2:]] - seeds[index[:, 1:2]], axis=-1)
    rivals = (distance[:, 2:] ** 2 - distance[:, 1:2] ** 2) / (2 * rivals)
    rivals = np.minimum(rivals, facets[:, 1:]).min(axis=1)
    rivals = np.minimum(rivals, (distance[:, -1] - distance[:, 1]) / 2)
    kind[rivals > radius] = _PAIR
    del rivals
    kind[bound > radius + MEMBRANE_REACH * widest] = _INTERIOR

    # Per block: the two cells, the signed distance of its centre to their
    # facet (negative on s1's side) and the facet's normal. Interior blocks
    # get one cell twice and a facet too far away to darken anything.
    first, second = index[:, 0], index[:, 1].copy()
    normal = (seeds[second] - seeds[first]) / gaps[:, :1]
    signed = (distance[:, 0] ** 2 - distance[:, 1] ** 2) / (2 * gaps[:, 0])
    width = membrane_width(normal, voxel_size)
    interior = kind == _INTERIOR
    second[interior] = first[interior]
    signed[interior] = -np.inf
    normal[interior] = 0.0
    del facets, bound, distance, gaps

    def spread(per_block: NDArray[Any]) -> NDArray[Any]:
        """Repeat block values over their voxels: ``[z, y, x]`` of the slab."""
        fine = np.broadcast_to(per_block.reshape(z1 - z0, nby, 1, nbx, 1), (z1 - z0, nby, b, nbx, b))
        return fine.reshape(z1 - z0, nby * b, nbx * b)[:, :ny, :nx]

    # Within a block the facet distance is linear in the voxel's offset from
    # the centre, which has no z part: blocks are one section thick.
    step = (np.arange(b, dtype=np.float32) - np.float32((b - 1) / 2))
    dx = np.tile(step, nbx)[:nx] * np.float32(vx)
    dy = np.tile(step, nby)[:ny, None] * np.float32(vy)
    facet = spread(signed.astype(np.float32))
    facet = facet + spread(normal[:, 0].astype(np.float32)) * dx
    facet += spread(normal[:, 1].astype(np.float32)) * dy
    near = np.where(facet < 0, spread(first), spread(second))
    np.abs(facet, out=facet)
    thickness = spread(width.astype(np.float32))
    inside = facet >= HALF_DEPTH * thickness
    facet /= thickness
    facet *= facet
    facet *= np.float32(-0.5)
    membrane = np.exp(facet, out=facet)
    del thickness

    # Blocks near edges where three cells meet: ask the tree voxel by voxel.
    where = np.flatnonzero(spread(kind == _QUERY))
    points = _voxel_centres(where, (nx, ny, z0), voxel_size)
    distance, pair = tree.query(points, k=2, workers=-1)
    del points
    normal = seeds[pair[:, 1]] - seeds[pair[:, 0]]
    gap = np.linalg.norm(normal, axis=1)
    near.reshape(-1)[where] = pair[:, 0]
    facet = (distance[:, 1] ** 2 - distance[:, 0] ** 2) / (2 * gap)
    width = membrane_width(normal / gap[:, None], voxel_size)
    membrane.reshape(-1)[where] = np.exp(-0.5 * (facet / width) ** 2)
    inside.reshape(-1)[where] = facet >= HALF_DEPTH * width
    return near, membrane, inside


def _voxel_centres(
    where: NDArray[np.intp], slab: tuple[int, int, int], voxel_size: tuple[float, float, float]
) -> NDArray[np.float64]:
    """Centres ``(n, 3)`` in nm ``(x, y, z)`` of flat indices into a slab.

    ``slab`` is ``(nx, ny, first section)``.
    """
    nx, ny, z0 = slab
    zi, rest = np.divmod(where, ny * nx)
    yi, xi = np.divmod(rest, nx)
    points = np.empty((where.size, 3), dtype=np.float64)
    points[:, 0] = (xi + 0.5) * voxel_size[0]
    points[:, 1] = (yi + 0.5) * voxel_size[1]
    points[:, 2] = (zi + z0 + 0.5) * voxel_size[2]
    return points


def membrane_width(
    normal: NDArray[np.float64], voxel_size: tuple[float, float, float]
) -> NDArray[np.float64]:
    """Membrane width (nm) across facets with unit normals ``(n, 3)``.

    The stain's profile widened, in quadrature, by half the voxel's extent
    along the normal: a facet parallel to the sections spans at least one
    section, so neighbouring cells never touch, and oblique membranes blur as
    they do through a real section's thickness.
    """
    extent = 0.5 * (np.abs(normal) @ np.asarray(voxel_size))
    width: NDArray[np.float64] = np.sqrt(MEMBRANE_SIGMA_NM**2 + extent**2)
    return width
