"""Models that need no downloads, for the demo, the tests and the benchmark.

Every model takes a normalised float32 block ``[C, Z, Y, X]`` and returns
float32 scores ``[K, Z, Y, X]`` of the same spatial shape, for
:func:`blockio.inference.run_inference`:

- :data:`membrane_watershed` — a classical pipeline for EM (dark
  membranes, bright cells): two classes, boundary and cell interior;
- :func:`threshold_model` — intensity above a threshold, optionally after a
  Gaussian (a model of known, finite receptive field, at negligible cost);
- :func:`train_tiny_unet` — trains a tiny 3-D U-Net on CPU for about a
  minute (needs torch) and returns it as a model.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest
from precomputed.geometry import xyz, xyz_float

__all__ = ["MembraneWatershed", "ThresholdModel", "TinyUNetModel", "membrane_watershed", "seeded_watershed", "threshold_model", "train_tiny_unet"]

log = logging.getLogger(__name__)

Block = npt.NDArray[np.float32]


def _zyx(xyz: Sequence[float]) -> tuple[float, float, float]:
    x, y, z = (float(v) for v in xyz)
    return (z, y, x)


@dataclass(frozen=True)
class MembraneWatershed:
    """Cells of an EM block: smoothed intensity, distance-transform seeds, seeded watershed.

    1. Gaussian smoothing (``sigma``, (x, y, z) voxels) of channel 0.
    2. Membrane score = 1 - smoothed intensity (membranes are dark ridges).
    3. Seeds = 6-connected components of the non-membrane mask
       (``smoothed > threshold``) eroded to voxels farther than
       ``seed_distance`` from a membrane (distances scaled by ``sampling``,
       (x, y, z), for anisotropic voxels) — the distance-transform maxima,
       one region per cell; seeds under ``min_seed`` voxels are dropped.
    4. Seeded watershed (scikit-image) of the membrane score; voxels where
       two basins meet form a one-voxel boundary (:func:`seeded_watershed`).

    Returns ``[2, Z, Y, X]`` float32: channel 0 the boundary (1 on basin
    borders), channel 1 the cell interior, so ``argmax != 0`` is the
    interior and :func:`~blockio.inference.run_inference` numbers the cells
    by connected components. The watershed is not local: use an overlap
    comparable to the cells' radius (in z too) so neighbouring blocks agree.
    Defaults suit the demo's 8 x 8 x 40 nm voxels.
    """

    sigma: tuple[float, float, float] = (1.5, 1.5, 0.5)
    threshold: float = 0.4
    seed_distance: float = 8.0
    sampling: tuple[float, float, float] = (1.0, 1.0, 5.0)
    min_seed: int = 1000

    __version__ = "2"
    instance = False

    def parameters(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def __call__(self, block: Block) -> Block:
        from scipy import ndimage

        image = np.asarray(block, dtype=np.float32)
        if image.ndim != 4:
            raise InvalidRequest(f"membrane_watershed takes a [C, Z, Y, X] block, got shape {list(image.shape)}")
        smooth = ndimage.gaussian_filter(image[0], _zyx(self.sigma))
        return seeded_watershed(smooth, threshold=self.threshold, seed_distance=self.seed_distance, sampling=self.sampling, min_seed=self.min_seed)


def seeded_watershed(interior: Block, *, threshold: float, seed_distance: float, sampling: Sequence[float], min_seed: int) -> Block:
    """Boundary / interior scores ``[2, Z, Y, X]`` from an interior score ``[Z, Y, X]`` (high inside cells).

    Seeds: voxels of ``interior > threshold`` farther than ``seed_distance``
    from its edge (Euclidean, ``sampling`` (x, y, z)), as 6-connected
    components of at least ``min_seed`` voxels. Each seed floods ``1 -
    interior`` (scikit-image's watershed, on 8-bit levels, only in the band
    outside the seeds' cores); voxels where two basins meet are boundary.
    """
    import cc3d
    from scipy import ndimage
    from skimage.segmentation import watershed

    out = np.zeros((2, *interior.shape), dtype=np.float32)
    distance = ndimage.distance_transform_edt(interior > threshold, sampling=_zyx(sampling))
    seeds = cc3d.connected_components(distance > seed_distance, connectivity=6, out_dtype=np.uint32)
    if min_seed > 0 and seeds.any():
        # small seeds are noise, except where the window cuts a cell: dropping those would
        # let a neighbour flood the cell, and the faces would then merge the two
        sizes = np.bincount(seeds.ravel())
        keep = sizes >= min_seed
        for face in (seeds[0], seeds[-1], seeds[:, 0], seeds[:, -1], seeds[:, :, 0], seeds[:, :, -1]):
            keep[np.unique(face)] = True
        keep[0] = False
        seeds = np.where(keep[seeds], seeds, 0).astype(np.uint32)
    if not seeds.any():
        out[0] = 1.0  # no cell in reach: all boundary
        return out
    # flooding the seeds' own cores changes nothing; leaving them out halves the watershed's work
    core = ndimage.binary_erosion(seeds > 0)
    score = np.round((1.0 - np.clip(interior, 0.0, 1.0)) * 255).astype(np.uint8)
    basins = watershed(score, markers=np.where(core, 0, seeds), mask=~core, connectivity=1)
    basins[core] = seeds[core]
    # skimage's watershed_line is very slow in 3-D; a one-sided border separates basins for 6-connected CC
    inside = basins > 0
    for axis in range(3):
        hi = [slice(None)] * 3
        lo = [slice(None)] * 3
        hi[axis], lo[axis] = slice(1, None), slice(None, -1)
        inside[tuple(hi)] &= basins[tuple(hi)] == basins[tuple(lo)]
    out[1] = inside
    out[0] = ~inside
    return out


membrane_watershed = MembraneWatershed()
"""The demo model with its defaults: ``blockio predict demo --model blockio.inference.models:membrane_watershed``."""


@dataclass(frozen=True)
class ThresholdModel:
    """Channel 0 (optionally Gaussian-smoothed) above ``threshold``, as a ``[1, Z, Y, X]`` score.

    Its receptive radius is ``ceil(4 * sigma)`` voxels per axis (0 without
    smoothing): with an overlap at least that, the result does not depend on
    the block size.
    """

    threshold: float = 0.5
    sigma: tuple[float, float, float] | None = None

    __version__ = "1"
    instance = False

    def parameters(self) -> dict[str, Any]:
        return {"threshold": self.threshold, "sigma": None if self.sigma is None else list(self.sigma)}

    @property
    def receptive_radius(self) -> tuple[int, int, int]:
        """(x, y, z) voxels."""
        if self.sigma is None:
            return (0, 0, 0)
        return xyz(int(math.ceil(4 * s)) for s in self.sigma)

    def __call__(self, block: Block) -> Block:
        image = np.asarray(block, dtype=np.float32)[0]
        if self.sigma is not None:
            from scipy import ndimage

            image = ndimage.gaussian_filter(image, _zyx(self.sigma), truncate=4.0)
        scores: npt.NDArray[np.float32] = (image > self.threshold).astype(np.float32)[np.newaxis]
        return scores


def threshold_model(threshold: float = 0.5, *, sigma: Sequence[float] | None = None) -> ThresholdModel:
    """A model of negligible cost: ``image > threshold`` (after a Gaussian of ``sigma`` (x, y, z) voxels)."""
    if not math.isfinite(float(threshold)):
        raise InvalidRequest(f"threshold must be finite, got {threshold!r}")
    if sigma is not None and (len(sigma) != 3 or any(float(s) <= 0 for s in sigma)):
        raise InvalidRequest(f"sigma must be three positive numbers (x, y, z), got {sigma!r}")
    return ThresholdModel(float(threshold), None if sigma is None else xyz_float(float(s) for s in sigma))


# -- a tiny CNN ------------------------------------------------------------------
def _tiny_unet(channels: int) -> Any:
    import torch
    from torch import nn

    def conv(a: int, b: int) -> nn.Module:
        return nn.Sequential(nn.Conv3d(a, b, 3, padding=1), nn.ReLU(inplace=True))

    class TinyUNet(nn.Module):
        """One level: two convolutions, (1, 2, 2) pooling, two, upsampling, skip, head."""

        def __init__(self) -> None:
            super().__init__()
            self.enc = nn.Sequential(conv(channels, 8), conv(8, 8))
            self.pool = nn.MaxPool3d((1, 2, 2))
            self.mid = nn.Sequential(conv(8, 16), conv(16, 16))
            self.up = nn.Upsample(scale_factor=(1, 2, 2), mode="nearest")
            self.dec = conv(24, 8)
            self.head = nn.Conv3d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            e = self.enc(x)
            m = self.up(self.mid(self.pool(e)))
            return self.head(self.dec(torch.cat([e, m], dim=1)))  # type: ignore[no-any-return]

    return TinyUNet()


class TinyUNetModel:
    """A trained :func:`train_tiny_unet` network as a model: ``[2, Z, Y, X]`` (boundary, interior) scores.

    The network's interior probability goes through :func:`seeded_watershed`
    (with :data:`membrane_watershed`'s settings), which closes small gaps in
    the predicted membranes; ``watershed=False`` returns the probabilities.
    """

    __version__ = "1"
    instance = False

    def __init__(self, net: Any, *, trained_on: str, steps: int, watershed: bool = True) -> None:
        self.net = net.eval()
        self.trained_on = trained_on
        self.steps = steps
        self.watershed = watershed

    def parameters(self) -> dict[str, Any]:
        return {"trained_on": self.trained_on, "steps": self.steps, "watershed": self.watershed, "weights": sum(int(p.numel()) for p in self.net.parameters())}

    def __call__(self, block: Block) -> Block:
        import torch

        image = np.asarray(block, dtype=np.float32)
        _, z, y, x = image.shape
        # pooling halves y and x: pad them to even sizes, crop after
        padded = np.pad(image, [(0, 0), (0, 0), (0, y % 2), (0, x % 2)], mode="edge")
        with torch.no_grad():
            logits = self.net(torch.from_numpy(np.ascontiguousarray(padded))[None])
            prob = np.ascontiguousarray(torch.softmax(logits, dim=1)[0, :, :, :y, :x].numpy(), dtype=np.float32)
        if not self.watershed:
            return prob
        w = membrane_watershed
        return seeded_watershed(prob[1], threshold=0.5, seed_distance=w.seed_distance, sampling=w.sampling, min_seed=w.min_seed)


def train_tiny_unet(
    root: str | os.PathLike[str],
    dataset_id: str,
    labels_npy: str | os.PathLike[str],
    *,
    steps: int = 300,
    patch_size: Sequence[int] = (64, 64, 16),
    batch_size: int = 4,
    seconds: float | None = 60.0,
    seed: int = 0,
) -> TinyUNetModel:
    """Train a tiny 3-D U-Net (CPU) to tell membranes from cell interior.

    Patches come from :class:`blockio.data.dataset.BlockDataset` (random sampler,
    percentile normalisation, as at inference); the target is the
    ground-truth membrane mask ``labels == 0`` of ``labels_npy``, a
    ``[z, y, x]`` label volume in the dataset's grid (the demo's
    ``sources/demo/labels.npy``).

    Parameters
    ----------
    steps
        Optimiser steps, unless ``seconds`` runs out first.
    patch_size
        (x, y, z) voxels.
    seconds
        Wall-clock budget (``None``: no limit).

    Returns
    -------
    TinyUNetModel
        A model for :func:`~blockio.inference.run_inference`.
    """
    import torch
    from torch.utils.data import DataLoader

    from blockio.data.dataset import BlockDataset

    torch.manual_seed(seed)
    labels = np.load(labels_npy, mmap_mode="r")
    ds = BlockDataset(root, dataset_id, patch_size, sampler="random", samples_per_epoch=steps * batch_size, boundary="zero", seed=seed)
    x, y, z = (int(v) for v in ds.patch_size)
    shape_zyx = labels.shape
    if len(shape_zyx) != 3:
        raise InvalidRequest(f"labels must be a [z, y, x] volume, got shape {list(shape_zyx)}")
    net = _tiny_unet(int(ds[0]["image"].shape[0]))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    weight = torch.tensor([2.0, 1.0])  # membranes are ~15 % of the voxels
    started = time.monotonic()
    done = 0
    last = math.nan
    net.train()
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=0):
        target = np.zeros((len(batch["offset"]), z, y, x), dtype=np.int64)
        for k, (ox, oy, oz) in enumerate(batch["offset"].tolist()):
            part = np.asarray(labels[oz : oz + z, oy : oy + y, ox : ox + x])
            target[k, : part.shape[0], : part.shape[1], : part.shape[2]] = part > 0
        loss = torch.nn.functional.cross_entropy(net(batch["image"]), torch.from_numpy(target), weight=weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        done += 1
        last = loss.item()
        if done % 50 == 0:
            log.info("tiny U-Net step %d: loss %.4f", done, last)
        if done >= steps or (seconds is not None and time.monotonic() - started > seconds):
            break
    log.info("tiny U-Net trained: %d steps in %.1f s, last loss %.4f", done, time.monotonic() - started, last)
    return TinyUNetModel(net, trained_on=dataset_id, steps=done)
