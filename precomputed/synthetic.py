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

Everything is computed slab by slab in z with ``cKDTree`` queries, so memory
stays near the size of the output arrays. Arrays are C-order ``[z, y, x]``;
shapes and voxel sizes given to or returned by this module are ``(x, y, z)``,
voxel sizes in nanometres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from scipy.spatial import cKDTree

from precomputed.errors import InvalidOption
from precomputed.organelles import organelle_darkness, z_span
from precomputed.organelles import organelles as place_organelles
from precomputed.stack_writer import write_tiff_stack
from precomputed.units import parse_voxel_size

__all__ = ["SyntheticVolume", "make_em_volume", "write_tiff_stack"]

# Voxels per kd-tree query batch: about 100 MiB of temporaries per slab.
_SLAB_VOXELS = 1 << 21

# Grey levels before per-section gain and noise (uint8 scale).
_MEMBRANE_LEVEL = 40.0
_MEMBRANE_CONTRAST = 0.9
_MEMBRANE_SIGMA_NM = 12.0  # stained membrane profile, before voxel blur
_JITTER = 0.4  # seed jitter, as a fraction of the grid spacing
_BLOTCH_NM = 300.0  # size of the soft cytoplasm blotches
_BLOCK = 8  # voxels along x and y of the coarse pre-query
_CANDIDATES = 6  # seeds the coarse pre-query asks for
_INTERIOR, _PAIR, _QUERY = 0, 1, 2  # kinds of block, see _slab_cells
_MEMBRANE_REACH = 4.0  # widths beyond which a membrane no longer darkens
_HALF_DEPTH = math.sqrt(2 * math.log(2))  # offset, in widths, of half darkness

_GRAIN = 0.05  # relative std of the fine cytoplasm grain
_BLOTCH = 0.04  # relative std of the soft blotches
_SHOT_NOISE = 0.4  # noise variance per grey level
_READ_NOISE = 4.0  # noise std at zero signal



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
    seeds = _jittered_grid(extent, cell, rng)
    levels = _cell_levels(len(seeds), rng)
    organelles = place_organelles(seeds, cell, rng)
    gain, offset, tilt = _section_variation(nz, rng)

    tree = cKDTree(seeds, leafsize=8)
    image = np.empty((nz, ny, nx), dtype=np.uint8)
    labels = np.empty((nz, ny, nx), dtype=np.uint32)
    blotch_y = _smooth_basis(ny, vsize[1], _BLOTCH_NM)
    blotch_x = _smooth_basis(nx, vsize[0], _BLOTCH_NM)
    org_z = np.array([z_span(org, vsize[2]) for org in organelles], dtype=int).reshape(-1, 2)
    present = np.zeros(len(seeds), dtype=bool)

    slab = max(1, _SLAB_VOXELS // (ny * nx))
    for z0 in range(0, nz, slab):
        z1 = min(nz, z0 + slab)
        near, membrane, inside = _slab_cells(tree, seeds, (nx, ny), (z0, z1), vsize)
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
            image[z] = _render_section(
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


def _jittered_grid(
    extent: NDArray[np.float64], spacing: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Seeds ``(n, 3)`` in nm ``(x, y, z)``, one per grid cell, with a margin of one cell.

    The margin keeps the cells at the volume's faces as large as the others.
    """
    axes = [np.arange(-spacing, e + spacing, spacing) + spacing / 2 for e in extent]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    grid = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    return grid + rng.uniform(-_JITTER, _JITTER, grid.shape) * spacing


def _cell_levels(n: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Cytoplasm grey level per seed: mostly light, a fifth darker (glia-like)."""
    levels = rng.uniform(150.0, 190.0, n)
    dark = rng.random(n) < 0.2
    levels[dark] = rng.uniform(115.0, 140.0, int(dark.sum()))
    return levels.astype(np.float32)




def _section_variation(
    nz: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per-section gain, offset and illumination tilt ``(y, x)``, as sections differ."""
    drift = 0.04 * np.sin(2 * np.pi * (np.arange(nz) / max(nz, 8) * rng.uniform(0.5, 1.5)))
    gain = 1.0 + drift + rng.normal(0.0, 0.03, nz)
    offset = rng.normal(0.0, 4.0, nz)
    tilt = rng.normal(0.0, 0.03, (nz, 2))
    return gain, offset, tilt


def _slab_cells(
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
    nby, nbx = -(-ny // b), -(-nx // b)
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
    widest = math.hypot(_MEMBRANE_SIGMA_NM, 0.5 * math.sqrt(vx * vx + vy * vy + vz * vz))
    kind = np.full(len(index), _QUERY, dtype=np.int8)
    rivals = np.linalg.norm(seeds[index[:, 2:]] - seeds[index[:, 1:2]], axis=-1)
    rivals = (distance[:, 2:] ** 2 - distance[:, 1:2] ** 2) / (2 * rivals)
    rivals = np.minimum(rivals, facets[:, 1:]).min(axis=1)
    rivals = np.minimum(rivals, (distance[:, -1] - distance[:, 1]) / 2)
    kind[rivals > radius] = _PAIR
    del rivals
    kind[bound > radius + _MEMBRANE_REACH * widest] = _INTERIOR

    # Per block: the two cells, the signed distance of its centre to their
    # facet (negative on s1's side) and the facet's normal. Interior blocks
    # get one cell twice and a facet too far away to darken anything.
    first, second = index[:, 0], index[:, 1].copy()
    normal = (seeds[second] - seeds[first]) / gaps[:, :1]
    signed = (distance[:, 0] ** 2 - distance[:, 1] ** 2) / (2 * gaps[:, 0])
    width = _membrane_width(normal, voxel_size)
    interior = kind == _INTERIOR
    second[interior] = first[interior]
    signed[interior] = -np.inf
    normal[interior] = 0.0
    del facets, bound, distance, gaps

    def spread(per_block: NDArray) -> NDArray:
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
    inside = facet >= _HALF_DEPTH * thickness
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
    width = _membrane_width(normal / gap[:, None], voxel_size)
    membrane.reshape(-1)[where] = np.exp(-0.5 * (facet / width) ** 2)
    inside.reshape(-1)[where] = facet >= _HALF_DEPTH * width
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


def _membrane_width(
    normal: NDArray[np.float64], voxel_size: tuple[float, float, float]
) -> NDArray[np.float64]:
    """Membrane width (nm) across facets with unit normals ``(n, 3)``.

    The stain's profile widened, in quadrature, by half the voxel's extent
    along the normal: a facet parallel to the sections spans at least one
    section, so neighbouring cells never touch, and oblique membranes blur as
    they do through a real section's thickness.
    """
    extent = 0.5 * (np.abs(normal) @ np.asarray(voxel_size))
    return np.sqrt(_MEMBRANE_SIGMA_NM**2 + extent**2)




def _smooth_basis(n: int, voxel_nm: float, scale_nm: float) -> NDArray[np.float32]:
    """Weights ``(n, k)`` spreading ``k`` coarse nodes smoothly over ``n`` voxels."""
    nodes = np.arange(-1.0, n * voxel_nm / scale_nm + 2.0) * scale_nm
    centres = (np.arange(n) + 0.5) * voxel_nm
    weights = np.exp(-0.5 * ((centres[:, None] - nodes[None, :]) / scale_nm) ** 2)
    weights /= np.sqrt((weights**2).sum(axis=1, keepdims=True))  # unit variance field
    return weights.astype(np.float32)


def _render_section(
    grey: NDArray[np.float32],
    membrane: NDArray[np.float32],
    rng: np.random.Generator,
    gain: float,
    offset: float,
    tilt: NDArray[np.float64],
    blotch_y: NDArray[np.float32],
    blotch_x: NDArray[np.float32],
) -> NDArray[np.uint8]:
    """One ``[y, x]`` section: texture, membranes, section brightness, noise, ``uint8``."""
    ny, nx = grey.shape
    # In place throughout: this runs once per section and dominates after the queries.
    # Filtered white noise with sigma 1 has std 1 / (2 sqrt(pi)); rescale to 1.
    grain = ndimage.gaussian_filter(rng.standard_normal((ny, nx), dtype=np.float32), 1.0)
    grain *= np.float32(_GRAIN * 2.0 * math.sqrt(math.pi))
    coarse = rng.standard_normal((blotch_y.shape[1], blotch_x.shape[1]), dtype=np.float32)
    # einsum, not BLAS: OpenBLAS threads cost more than these small products.
    section = np.einsum("ik,kj->ij", blotch_y, np.einsum("kl,jl->kj", coarse, blotch_x))
    section *= np.float32(_BLOTCH)
    section += grain
    section += np.float32(1.0)
    section *= grey
    del grain
    # Towards the membrane level: L + (I - L) * (1 - contrast * membrane).
    keep = membrane * np.float32(-_MEMBRANE_CONTRAST)
    keep += np.float32(1.0)
    section -= np.float32(_MEMBRANE_LEVEL)
    section *= keep
    section += np.float32(_MEMBRANE_LEVEL)

    ramp_y = np.linspace(-0.5, 0.5, ny) * tilt[0]
    ramp_x = np.linspace(-0.5, 0.5, nx) * tilt[1]
    shading = (gain * (1.0 + ramp_y[:, None] + ramp_x[None, :])).astype(np.float32)
    section *= shading
    section += np.float32(offset)
    # Poisson-like: the variance grows with the signal, plus a read-out floor.
    sigma = np.maximum(section, np.float32(0.0), out=shading)
    sigma *= np.float32(_SHOT_NOISE)
    sigma += np.float32(_READ_NOISE**2)
    np.sqrt(sigma, out=sigma)
    sigma *= rng.standard_normal((ny, nx), dtype=np.float32)
    section += sigma
    np.rint(section, out=section)
    np.clip(section, 0, 255, out=section)
    return section.astype(np.uint8)
