"""A small 3-D convolutional encoder, trained self-supervised on a dataset (contrastive), as an embedding model.

>>> encoder = train_encoder("blockio-data", "demo", cell=(16, 16, 4), seconds=60)
>>> run_embedding("blockio-data", "demo", encoder, "encoder", cell=(16, 16, 4))

Training (SimCLR's recipe, small): windows of one cell grown by the halo are
cut at random places of the dataset (z-scored, as ``blockio embed`` reads
it); each is seen twice, shifted by up to ``shift`` voxels, flipped and
turned by multiples of 90 degrees in x-y, with its own gain, offset and
noise. Both views go through the network; a cell's representation is the
mean of the last feature map over the cell, a small head projects it, and
the InfoNCE loss (NT-Xent) pulls the two views of one cell together and
pushes the other cells of the batch away. No label is used.

The network is fully convolutional with zero padding: a 3 x 3 convolution
in x-y, an average pooling of 2 x 2 in x-y (z is kept: sections are
thick), a 3 x 3 x 3 convolution, another pooling, two more. Its receptive
field reaches 11 voxels in x-y and 3 in z beyond a 4 x 4 x 1 group of voxels,
within the declared ``halo`` of (16, 16, 4), a multiple of the pooling: so a cell's vector depends only on its window, never on the
block (the embedding protocol of :mod:`blockio.embeddings.models`). Cells
must be multiples of 4 x 4 x 1 voxels.

torch is imported here only; ``import blockio`` does not need it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import Any

import numpy as np
import numpy.typing as npt

from blockio.errors import InvalidRequest
from precomputed.geometry import xyz

__all__ = ["CellEncoder", "ENCODER_HALO", "POOLING", "train_encoder"]

log = logging.getLogger(__name__)

Xyz = tuple[int, int, int]
ENCODER_HALO: Xyz = (16, 16, 4)
"""(x, y, z) voxels of context the encoder needs on each side of a cell."""
POOLING: Xyz = (4, 4, 1)
"""(x, y, z) factor between the input and the last feature map; cells are multiples of it."""
MAX_TRAINING_VOXELS = 1 << 26
"""Training reads at most this many voxels (the middle of a larger volume)."""


def _network(channels: int, width: int, dimension: int) -> Any:
    from torch import nn

    def conv(a: int, b: int, relu: bool = True) -> list[nn.Module]:
        return [nn.Conv3d(a, b, 3, padding=1), *([nn.ReLU(inplace=True)] if relu else [])]

    return nn.Sequential(
        nn.Conv3d(channels, 8, (1, 3, 3), padding=(0, 1, 1)),
        nn.ReLU(inplace=True),
        nn.AvgPool3d((1, 2, 2)),
        *conv(8, width),
        nn.AvgPool3d((1, 2, 2)),
        *conv(width, width),
        *conv(width, dimension, relu=False),
    )


def _head(dimension: int) -> Any:
    from torch import nn

    return nn.Sequential(nn.Linear(dimension, 2 * dimension), nn.ReLU(inplace=True), nn.Linear(2 * dimension, dimension))


def _check_cell(cell: Xyz) -> Xyz:
    values = tuple(int(v) for v in cell)
    if len(values) != 3 or any(v <= 0 or v % p for v, p in zip(values, POOLING)):
        raise InvalidRequest(f"the encoder's cells are multiples of {list(POOLING)} (x, y, z) voxels, got {list(cell)}")
    return values[0], values[1], values[2]


class CellEncoder:
    """A trained encoder as an embedding model: ``[D, nz, ny, nx]`` cell vectors of a window.

    Attributes
    ----------
    halo
        (x, y, z) voxels: :data:`ENCODER_HALO`.
    dimension
        D, the length of a vector.
    losses
        The training loss of every step.
    """

    __version__ = "1"
    instance = False
    halo = ENCODER_HALO

    def __init__(self, net: Any, *, dimension: int, trained_on: str, steps: int, losses: list[float], seconds: float) -> None:
        self.net = net.eval()
        self.dimension = dimension
        self.trained_on = trained_on
        self.steps = steps
        self.losses = losses
        self.seconds = seconds

    def parameters(self) -> dict[str, Any]:
        return {
            "kind": "contrastive 3-D CNN (NT-Xent)",
            "trained_on": self.trained_on,
            "steps": self.steps,
            "dimension": self.dimension,
            "weights": sum(int(p.numel()) for p in self.net.parameters()),
            "first_loss": round(self.losses[0], 4) if self.losses else None,
            "last_loss": round(self.losses[-1], 4) if self.losses else None,
        }

    def state_dict(self) -> Any:
        """The network's weights (their hash goes into the set's provenance)."""
        return self.net.state_dict()

    def features(self, window: npt.NDArray[np.float32]) -> Any:
        """The last feature map of a ``[N, C, Z, Y, X]`` batch (a torch tensor, ``[N, D, Z, Y/4, X/4]``)."""
        import torch

        return self.net(torch.from_numpy(np.ascontiguousarray(window, dtype=np.float32)))

    def __call__(
        self,
        block: npt.NDArray[np.float32],
        *,
        cell: Xyz | None = None,
        segments: npt.NDArray[Any] | None = None,
        core: tuple[slice, slice, slice] | None = None,
        voxel_size: tuple[float, float, float] | None = None,
    ) -> npt.NDArray[np.float32]:
        import torch

        if cell is None or segments is not None:
            raise InvalidRequest("CellEncoder makes one vector per cell: give cell=(x, y, z), not segments")
        cx, cy, cz = _check_cell(cell)
        image = np.asarray(block, dtype=np.float32)
        image = image if image.ndim == 4 else image[np.newaxis]
        with torch.no_grad():
            fmap = self.features(image[np.newaxis])[0].numpy()
        hx, hy, hz = (h // p for h, p in zip(self.halo, POOLING))
        px, py, pz = (c // p for c, p in zip((cx, cy, cz), POOLING))
        inner = fmap[:, hz : fmap.shape[1] - hz, hy : fmap.shape[2] - hy, hx : fmap.shape[3] - hx]
        d, z, y, x = inner.shape
        grid = inner.reshape(d, z // pz, pz, y // py, py, x // px, px)
        return np.ascontiguousarray(grid.mean(axis=(2, 4, 6)), dtype=np.float32)


def _training_volume(root: str, dataset_id: str, max_voxels: int) -> npt.NDArray[np.float32]:
    """The dataset's mip 0, z-scored as ``blockio embed`` reads it, ``[C, Z, Y, X]`` (its middle when larger than ``max_voxels``)."""
    from blockio.store import open_store

    store = open_store(root)
    shape = [int(v) for v in store.info(dataset_id)["shape"]]
    size = list(shape)
    while math.prod(size) > max_voxels:
        axis = int(np.argmax([size[0], size[1], size[2] * 4]))  # keep sections over x-y extent
        size[axis] = max(1, size[axis] // 2)
    ox, oy, oz = ((s - n) // 2 for s, n in zip(shape, size))
    block = store.read_block(dataset_id, (ox, oy, oz), (size[0], size[1], size[2]), normalize="zscore", dtype=np.float32)
    arr = np.asarray(block, dtype=np.float32)
    return arr if arr.ndim == 4 else arr[np.newaxis]


def _views(volume: Any, size: Xyz, batch: int, shift: int, rng: np.random.Generator) -> tuple[Any, Any]:
    """Two augmented views ``[N, C, Z, Y, X]`` of ``batch`` windows of ``size`` (x, y, z) at random places."""
    import torch

    sx, sy, sz = size
    _, z, y, x = volume.shape
    views: list[list[Any]] = [[], []]
    for _ in range(batch):
        # room for the shift on every side; reflected when the volume is smaller than the window
        start = [int(rng.integers(0, max(1, n - s - 2 * m) + 1)) + m for n, s, m in ((x, sx, shift), (y, sy, shift), (z, sz, 0))]
        for out in views:
            dx, dy = (int(v) for v in rng.integers(-shift, shift + 1, 2))
            x0, y0, z0 = start[0] + dx, start[1] + dy, start[2]
            crop = _cut(volume, (x0, y0, z0), size)
            if rng.random() < 0.5:
                crop = torch.flip(crop, dims=(3,))
            if rng.random() < 0.5:
                crop = torch.flip(crop, dims=(2,))
            if sx == sy and rng.random() < 0.5:
                crop = crop.transpose(2, 3)
            gain, offset = float(rng.uniform(0.7, 1.3)), float(rng.uniform(-0.3, 0.3))
            crop = crop * gain + offset + 0.1 * torch.randn(crop.shape, generator=None)
            out.append(crop)
    return torch.stack(views[0]), torch.stack(views[1])


def _cut(volume: Any, start: Xyz, size: Xyz) -> Any:
    """``volume[:, z0:z0+sz, y0:y0+sy, x0:x0+sx]``, reflected where it passes an edge."""
    import torch

    _, z, y, x = volume.shape
    if all(0 <= s0 and s0 + s <= n for s0, s, n in zip(start, size, (x, y, z))):
        (x0, y0, z0), (sx, sy, sz) = start, size
        return volume[:, z0 : z0 + sz, y0 : y0 + sy, x0 : x0 + sx]
    index = []
    for s0, s, n in zip(start, size, (x, y, z)):
        i = np.arange(s0, s0 + s)
        period = max(1, 2 * (n - 1))
        i = np.abs(i) % period
        index.append(np.where(i >= n, period - i, i) if n > 1 else np.zeros_like(i))
    ix, iy, iz = (torch.from_numpy(i.astype(np.int64)) for i in index)
    return volume[:, iz][:, :, iy][:, :, :, ix]


def _nt_xent(a: Any, b: Any, temperature: float) -> Any:
    import torch

    z = torch.nn.functional.normalize(torch.cat([a, b]), dim=1)
    n = a.shape[0]
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return torch.nn.functional.cross_entropy(sim, target)


def train_encoder(
    root: str | os.PathLike[str],
    dataset_id: str,
    *,
    cell: Xyz = (16, 16, 4),
    dimension: int = 16,
    width: int = 16,
    steps: int = 400,
    batch_size: int = 32,
    seconds: float | None = 60.0,
    shift: int = 2,
    temperature: float = 0.2,
    seed: int = 0,
    max_voxels: int = MAX_TRAINING_VOXELS,
) -> CellEncoder:
    """Train the encoder on ``dataset_id`` without labels (CPU); returns it as an embedding model.

    Parameters
    ----------
    cell
        (x, y, z) voxels of the cells it will embed (multiples of :data:`POOLING`).
    dimension, width
        Length of a vector; channels of the first feature maps.
    steps, seconds
        Optimiser steps, unless the wall-clock budget ``seconds`` runs out first (``None``: no limit).
    batch_size
        Cells per step (each seen twice).
    shift
        Voxels (x-y) the two views of a cell may differ by.
    temperature
        Of the NT-Xent loss.

    Returns
    -------
    CellEncoder
        For :func:`~blockio.embeddings.run.run_embedding`; ``losses`` holds every step's loss.
    """
    import torch

    cell = _check_cell(cell)
    if steps < 1 or batch_size < 2:
        raise InvalidRequest(f"training needs steps >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    volume = torch.from_numpy(_training_volume(str(root), dataset_id, max_voxels))
    net = _network(int(volume.shape[0]), width, dimension)
    head = _head(dimension)
    opt = torch.optim.Adam([*net.parameters(), *head.parameters()], lr=2e-3)
    size: Xyz = xyz(c + 2 * h for c, h in zip(cell, ENCODER_HALO))
    hx, hy, hz = (h // p for h, p in zip(ENCODER_HALO, POOLING))
    started = time.monotonic()
    losses: list[float] = []
    net.train()
    for step in range(steps):
        a, b = _views(volume, size, batch_size, shift, rng)
        fmap = net(torch.cat([a, b]))
        rep = fmap[:, :, hz : fmap.shape[2] - hz, hy : fmap.shape[3] - hy, hx : fmap.shape[4] - hx].mean(dim=(2, 3, 4))
        proj = head(rep)
        loss = _nt_xent(proj[:batch_size], proj[batch_size:], temperature)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if (step + 1) % 50 == 0:
            log.info("encoder step %d: loss %.4f", step + 1, losses[-1])
        if seconds is not None and time.monotonic() - started > seconds:
            break
    took = time.monotonic() - started
    log.info("encoder trained: %d steps in %.1f s, loss %.3f -> %.3f", len(losses), took, losses[0], losses[-1])
    return CellEncoder(net, dimension=dimension, trained_on=dataset_id, steps=len(losses), losses=losses, seconds=took)
