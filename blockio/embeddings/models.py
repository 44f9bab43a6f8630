"""Models that output vectors, and the default one: multi-scale intensity and gradient statistics.

The embedding protocol (what :func:`blockio.embeddings.run.run_embedding` calls)
------------------------------------------------------------------------------
A model is a callable loaded like ``blockio predict`` loads one
(``"pkg.module:callable"``). It declares ``halo``: the (x, y, z) voxels of
context it needs on each side (an int for all three); a cell's vector then
depends only on the voxels within ``halo`` of the cell, never on the block.

*Cells.* ``model(block, cell=(cx, cy, cz), voxel_size=(x, y, z))`` gets a
float32 ``[C, Z, Y, X]`` window: whole cells grown by ``halo`` on every side.
It returns ``[D, nz, ny, nx]``: one D-vector per cell of the window's inner
part (``n = (size - 2 * halo) / cell`` along each axis).

*Segments.* ``model(block, segments=labels, core=slices, voxel_size=...)``
gets the same window and its segment ids (``[Z, Y, X]`` uint64, 0 is
background) and ``core``, the ``(z, y, x)`` slices of the window's inner part.
It returns ``(ids, moments, counts)`` over the core's voxels: the segment ids
``[n]``, one vector per id ``[n, D']`` and the voxels each one covers. The
runner averages the moments of a segment over every block it crosses,
weighted by the counts, and calls ``model.finalize(moments) -> [n, D]`` when
the model has one (so a model can return sums of powers and finish with a
mean and a standard deviation, exactly, whatever the blocks).

Optional attributes, recorded in the set's provenance: ``__version__``,
``parameters``, ``weights_hash`` (else the hash of a PyTorch
``state_dict()``, else of ``parameters``) and ``dimension``.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from precomputed.geometry import xyz_float

__all__ = ["MultiscaleFeatures", "model_halo", "multiscale_features", "weights_hash"]

Xyz = tuple[int, int, int]


def model_halo(model: Any) -> Xyz:
    """The (x, y, z) halo a model declares (0 when it declares none)."""
    halo = getattr(model, "halo", 0)
    if isinstance(halo, (int, np.integer)) and not isinstance(halo, bool):
        return (int(halo),) * 3
    values = tuple(int(v) for v in halo)
    if len(values) != 3 or any(v < 0 for v in values):
        from blockio.errors import InvalidRequest

        raise InvalidRequest(f"a model's halo is an int or (x, y, z) of non-negative ints, got {halo!r}")
    return values


def weights_hash(model: Any) -> str | None:
    """sha256 of the model's weights: its ``weights_hash``, its ``state_dict()`` tensors, or its ``parameters``."""
    declared = getattr(model, "weights_hash", None)
    if isinstance(declared, str):
        return declared
    state = getattr(model, "state_dict", None)
    digest = hashlib.sha256()
    if callable(state):
        for key, tensor in sorted(state().items()):
            digest.update(key.encode())
            digest.update(np.ascontiguousarray(tensor.detach().cpu().numpy()).tobytes())
        return digest.hexdigest()
    params = getattr(model, "parameters", None)
    params = params() if callable(params) else params
    if params is None:
        return None
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()


class MultiscaleFeatures:
    """Classical features: Gaussian-smoothed intensity and gradient magnitude at several scales.

    For every scale ``s`` (in units of the finest voxel axis, so an
    anisotropic volume is smoothed isotropically in nm) the image is smoothed
    with a Gaussian of that width and its gradient magnitude taken; a cell's
    (or segment's) vector is the mean and standard deviation of both:
    ``[mean I_s, std I_s, mean |grad I_s|, std |grad I_s|]`` per scale, 4 x len(scales) values.

    Parameters
    ----------
    scales
        Gaussian widths (sigma) in finest-axis voxels.
    """

    __version__ = "1"
    instance = False

    def __init__(self, scales: tuple[float, ...] = (1.0, 2.0, 4.0)) -> None:
        self.scales = tuple(float(s) for s in scales)
        # scipy's Gaussian reaches 4 sigma (+1 voxel for the gradient's difference)
        self.halo = int(math.ceil(4 * max(self.scales))) + 1
        self.dimension = 4 * len(self.scales)

    @property
    def parameters(self) -> dict[str, Any]:
        return {"scales": list(self.scales), "statistics": ["mean", "std"], "channels": ["intensity", "gradient_magnitude"]}

    def _sigmas(self, scale: float, voxel_size: tuple[float, float, float] | None) -> tuple[float, float, float]:
        vs = voxel_size or (1.0, 1.0, 1.0)
        finest = min(vs)
        return xyz_float(scale * finest / v for v in reversed(vs))  # z, y, x

    def voxel_features(self, image: npt.NDArray[np.float32], voxel_size: tuple[float, float, float] | None) -> npt.NDArray[np.float32]:
        """``[2 * len(scales), Z, Y, X]``: smoothed intensity and gradient magnitude per scale."""
        from scipy import ndimage

        out = np.empty((2 * len(self.scales), *image.shape), dtype=np.float32)
        for i, scale in enumerate(self.scales):
            sigma = self._sigmas(scale, voxel_size)
            out[2 * i] = ndimage.gaussian_filter(image, sigma, mode="reflect")
            out[2 * i + 1] = ndimage.gaussian_gradient_magnitude(image, sigma, mode="reflect")
        return out

    def __call__(
        self,
        block: npt.NDArray[np.float32],
        *,
        cell: Xyz | None = None,
        segments: npt.NDArray[Any] | None = None,
        core: tuple[slice, slice, slice] | None = None,
        voxel_size: tuple[float, float, float] | None = None,
    ) -> Any:
        image = np.asarray(block, dtype=np.float32)
        image = image.mean(axis=0) if image.ndim == 4 else image
        h = self.halo
        feats = self.voxel_features(image, voxel_size)
        if segments is not None:
            inner = core if core is not None else (slice(h, -h),) * 3
            return self._segment_moments(feats[(slice(None), *inner)], np.asarray(segments)[inner])
        if cell is None:
            from blockio.errors import InvalidRequest

            raise InvalidRequest("MultiscaleFeatures needs cell=(x, y, z) or segments=")
        feats = feats[:, h : feats.shape[1] - h, h : feats.shape[2] - h, h : feats.shape[3] - h]
        cx, cy, cz = cell
        c, z, y, x = feats.shape
        grid = feats.reshape(c, z // cz, cz, y // cy, cy, x // cx, cx).astype(np.float64)
        mean = grid.mean(axis=(2, 4, 6))
        std = grid.std(axis=(2, 4, 6))
        out = np.stack([mean, std], axis=1).reshape(2 * c, *mean.shape[1:])  # mean I, std I, mean G, std G per scale
        return out.astype(np.float32)

    @staticmethod
    def _segment_moments(feats: npt.NDArray[np.float32], labels: npt.NDArray[Any]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.float64], npt.NDArray[np.int64]]:
        flat = labels.reshape(-1).astype(np.uint64)
        ids, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        keep = ids != 0
        c = feats.shape[0]
        moments = np.empty((len(ids), 2 * c))
        for i in range(c):
            values = feats[i].reshape(-1).astype(np.float64)
            moments[:, 2 * i] = np.bincount(inverse, values, minlength=len(ids)) / counts
            moments[:, 2 * i + 1] = np.bincount(inverse, values * values, minlength=len(ids)) / counts
        return ids[keep], moments[keep], counts[keep].astype(np.int64)

    @staticmethod
    def finalize(moments: npt.NDArray[np.float64]) -> npt.NDArray[np.float32]:
        """``[mean, E[x^2]]`` pairs -> ``[mean, std]`` pairs."""
        out = np.array(moments, dtype=np.float64)
        out[:, 1::2] = np.sqrt(np.maximum(out[:, 1::2] - out[:, 0::2] ** 2, 0.0))
        return out.astype(np.float32)


multiscale_features = MultiscaleFeatures()
"""The default embedding model (scales 1, 2, 4): ``blockio.embeddings.models:multiscale_features``."""
