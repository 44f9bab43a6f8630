"""A synthetic serial-section EM volume of cells, with its ground-truth labels.

No data can be downloaded by ``blockio demo`` or by the tests, so they make
their own. The volume imitates a stained, serial-section electron micrograph:

- cells are the Voronoi regions of seeds placed on a jittered grid in
  *physical* (nm) coordinates, so anisotropic voxels still give cells that
  are round in space;
- membranes are dark bands around each Voronoi facet. Their width follows
  the distance to the bisector plane of the two nearest seeds, broadened by
  how much of the facet one voxel (and one section) spans, as oblique
  membranes blur in real sections;
- cytoplasm has a grey level per cell, fine grain and soft blotches, a few
  dark mitochondria and rings of vesicles;
- every section has its own brightness, contrast and illumination gradient;
- signal-dependent (Poisson-like) noise, rounded into ``uint8``.

The cells and membranes are in :mod:`precomputed.synthetic_cells`, the
organelles in :mod:`precomputed.organelles`, the look of each section in
:mod:`precomputed.synthetic_sections`, the TIFF stack writer in
:mod:`precomputed.stack_writer`; this module puts them together. Everything
is computed slab by slab in z with ``cKDTree`` queries, so memory stays near
the size of the output arrays. Arrays are C-order ``[z, y, x]``;
shapes and voxel sizes given to or returned by this module are ``(x, y, z)``,
voxel sizes in nanometres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from precomputed.errors import InvalidOption
from precomputed.organelles import organelle_darkness, z_span
from precomputed.organelles import organelles as place_organelles
from precomputed.stack_writer import write_tiff_stack
from precomputed.synthetic_cells import jittered_grid, slab_cells
from precomputed.synthetic_sections import BLOTCH_NM, cell_levels, render_section, section_variation, smooth_basis
from precomputed.units import parse_voxel_size

__all__ = ["SyntheticVolume", "make_em_volume", "write_tiff_stack"]

# Voxels per kd-tree query batch: about 100 MiB of temporaries per slab.
_SLAB_VOXELS = 1 << 21


@dataclass(frozen=True)
class SyntheticVolume:
    """A synthetic EM image with its ground-truth segmentation.

    Attributes
    ----------
    image
        ``uint8`` C-order ``[z, y, x]``: bright cytoplasm, dark membranes.
    labels
        ``uint32`` C-order ``[z, y, x]``: cell ids, consecutive from 1; 0 on
        membranes.
    voxel_size
        ``(x, y, z)`` in nanometres.
    """

    image: NDArray[np.uint8]
    labels: NDArray[np.uint32]
    voxel_size: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Size of the volume in voxels, ``(x, y, z)``."""
        z, y, x = self.image.shape
        return (x, y, z)





def make_em_volume(
    shape: tuple[int, int, int] = (512, 512, 128),
    *,
    voxel_size: tuple[float, float, float] = (8.0, 8.0, 40.0),
    cell_size_nm: float = 1000.0,
    seed: int = 0,
) -> SyntheticVolume:
    """Make a synthetic serial-section EM volume of cells.

    Parameters
    ----------
    shape
        Size in voxels, ``(x, y, z)``. The arrays returned are ``[z, y, x]``.
    voxel_size
        Voxel size ``(x, y, z)`` in nanometres.
    cell_size_nm
        Spacing of the cell centres in nanometres (about a cell's diameter).
        The default gives about 200 cells, many cut by the faces, in the
        default volume.
    seed
        Seed of the random generator; the same arguments give the same
        volume, bit for bit.

    Returns
    -------
    SyntheticVolume
        ``image`` (``uint8`` ``[z, y, x]``), ``labels`` (``uint32``
        ``[z, y, x]``, 0 on membranes, cells numbered from 1) and
        ``voxel_size`` ``(x, y, z)`` nm.

    Raises
    ------
    InvalidOption
        (a ``ValueError``) for a non-positive shape, voxel size or cell size,
        cells smaller than two voxels, or a negative seed.
    """
    nx, ny, nz = _check_shape(shape)
    vsize = parse_voxel_size(voxel_size)
    cell = _check_positive("cell_size_nm", cell_size_nm)
    if cell < 2 * max(vsize):
        raise InvalidOption(
            f"cell_size_nm={cell:g} is less than two voxels ({2 * max(vsize):g} nm); "
            "give a larger cell size"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidOption(f"seed must be a non-negative integer, got {seed!r}")
    seed = int(seed)

    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(0,)))
    extent = np.array([nx, ny, nz], dtype=np.float64) * np.array(vsize)
    seeds = jittered_grid(extent, cell, rng)
    levels = cell_levels(len(seeds), rng)
    organelles = place_organelles(seeds, cell, rng)
    gain, offset, tilt = section_variation(nz, rng)

    tree = cKDTree(seeds, leafsize=8)
    image = np.empty((nz, ny, nx), dtype=np.uint8)
    labels = np.empty((nz, ny, nx), dtype=np.uint32)
    blotch_y = smooth_basis(ny, vsize[1], BLOTCH_NM)
    blotch_x = smooth_basis(nx, vsize[0], BLOTCH_NM)
    org_z = np.array([z_span(org, vsize[2]) for org in organelles], dtype=int).reshape(-1, 2)
    present = np.zeros(len(seeds), dtype=bool)

    slab = max(1, _SLAB_VOXELS // (ny * nx))
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        near, membrane, inside = slab_cells(tree, seeds, (nx, ny), (z0, z1), vsize)
        labels[z0:z1] = np.where(inside, near + 1, 0)
        del inside
        for z in range(z0, z1):
            _separate(labels[z], labels[z - 1] if z > 0 else None)
            present |= np.bincount(labels[z].ravel(), minlength=len(seeds) + 1)[1:] > 0

        reached = np.flatnonzero((org_z[:, 0] < z1) & (org_z[:, 1] > z0))
        grey = levels[near]
        grey *= 1.0 - organelle_darkness([organelles[j] for j in reached], near, z0, vsize)
        del near
        for k, z in enumerate(range(z0, z1)):
            section = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1, z)))
            image[z] = render_section(
                grey[k], membrane[k], section, gain[z], offset[z], tilt[z], blotch_y, blotch_x
            )

    # Seed order is grid order (z, then y, then x), so ids grow through the volume.
    lut = np.zeros(len(seeds) + 1, dtype=np.uint32)
    lut[1:][present] = np.arange(1, int(present.sum()) + 1, dtype=np.uint32)
    for z0 in range(0, nz, slab):
        labels[z0 : z0 + slab] = lut[labels[z0 : z0 + slab]]
    return SyntheticVolume(image=image, labels=labels, voxel_size=vsize)


def _separate(section: NDArray[np.uint32], previous: NDArray[np.uint32] | None) -> None:
    """Zero, in place, voxels of a ``[y, x]`` section that touch another cell.

    The membrane follows the facet between a voxel's two nearest seeds, which
    near edges where three cells meet is not always the nearest facet of its
    cell; there two cells can meet without a membrane voxel between them.
    Of each such pair along x, y or z (``previous`` is the section before,
    already separated), the later voxel becomes membrane.
    """
    for a, b in ((section[:, 1:], section[:, :-1]), (section[1:], section[:-1])):
        a[(a != b) & (a > 0) & (b > 0)] = 0
    if previous is not None:
        section[(section != previous) & (section > 0) & (previous > 0)] = 0


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """Return ``shape`` as three positive ints ``(x, y, z)``."""
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) != 3:
        raise InvalidOption(f"shape must be three sizes (x, y, z), got {shape!r}")
    for name, n in zip("xyz", shape):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InvalidOption(f"shape {name} must be a positive integer, got {n!r}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _check_positive(name: str, value: float) -> float:
    """Return ``value`` as a float if it is a positive finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise InvalidOption(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise InvalidOption(f"{name} must be positive and finite, got {value!r}")
    return float(value)
