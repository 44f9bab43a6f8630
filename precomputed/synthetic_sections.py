"""The look of the synthetic EM volume, section by section.

Cytoplasm has a grey level per cell, fine grain and soft blotches; membranes
pull it towards a dark level; every section has its own brightness, contrast
and illumination gradient; signal-dependent (Poisson-like) noise is rounded
into ``uint8``. Sections are C-order ``[y, x]``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = ["BLOTCH_NM", "cell_levels", "render_section", "section_variation", "smooth_basis"]

# Grey levels before per-section gain and noise (uint8 scale).
_MEMBRANE_LEVEL = 40.0
_MEMBRANE_CONTRAST = 0.9
BLOTCH_NM = 300.0
"""Size (nm) of the soft cytoplasm blotches."""
_GRAIN = 0.05  # relative std of the fine cytoplasm grain
_BLOTCH = 0.04  # relative std of the soft blotches
_SHOT_NOISE = 0.4  # noise variance per grey level
_READ_NOISE = 4.0  # noise std at zero signal


def cell_levels(n: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """Cytoplasm grey level per seed: mostly light, a fifth darker (glia-like)."""
    levels = rng.uniform(150.0, 190.0, n)
    dark = rng.random(n) < 0.2
    levels[dark] = rng.uniform(115.0, 140.0, int(dark.sum()))
    return levels.astype(np.float32)


def section_variation(
    nz: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Per-section gain, offset and illumination tilt ``(y, x)``, as sections differ."""
    drift = 0.04 * np.sin(2 * np.pi * (np.arange(nz) / max(nz, 8) * rng.uniform(0.5, 1.5)))
    gain = 1.0 + drift + rng.normal(0.0, 0.03, nz)
    offset = rng.normal(0.0, 4.0, nz)
    tilt = rng.normal(0.0, 0.03, (nz, 2))
    return gain, offset, tilt


def smooth_basis(n: int, voxel_nm: float, scale_nm: float) -> NDArray[np.float32]:
    """Weights ``(n, k)`` spreading ``k`` coarse nodes smoothly over ``n`` voxels."""
    nodes = np.arange(-1.0, n * voxel_nm / scale_nm + 2.0) * scale_nm
    centres = (np.arange(n) + 0.5) * voxel_nm
    weights = np.exp(-0.5 * ((centres[:, None] - nodes[None, :]) / scale_nm) ** 2)
    weights /= np.sqrt((weights**2).sum(axis=1, keepdims=True))  # unit variance field
    return weights.astype(np.float32)


def render_section(
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
    out: NDArray[np.uint8] = section.astype(np.uint8)
    return out
