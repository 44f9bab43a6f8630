"""Train a tiny 3-D CNN to find membranes, on one or more datasets at one physical voxel size.

    blockio demo --no-serve
    python examples/train_tiny_cnn.py --root blockio-data --datasets demo --steps 20
    python examples/train_tiny_cnn.py --root ROOT --datasets em iso --voxel-size 8,8,20 --steps 50

Targets come from each dataset's label layer (``--label-layer``, default
``truth``, as ``blockio demo`` writes it): cell ids, 0 on membranes. With
``--voxel-size`` (x, y, z nm) every dataset is read at its nearest mip and
resampled to that size, so datasets of different voxel sizes (8x8x40 nm
serial sections beside 4x4x4 nm FIB-SEM) give patches of one shape and one
physical size and share one DataLoader; their intensities share one range
through the catalog's percentile windows.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from blockio.data.dataset import BlockDataset

PATCH = (32, 32, 8)  # (x, y, z) voxels (of --voxel-size when given)


def tiny_cnn() -> nn.Module:
    """Three 3-D convolutions: ``[n, 1, z, y, x]`` image -> ``[n, 1, z, y, x]`` membrane logits."""
    return nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv3d(8, 16, 3, padding=1), nn.ReLU(),
        nn.Conv3d(16, 1, 1),
    )


def train(
    root: str | os.PathLike[str],
    datasets: Sequence[str],
    *,
    voxel_size: Sequence[float] | None = None,
    label_layer: str = "truth",
    patch_size: Sequence[int] = PATCH,
    steps: int = 20,
    batch_size: int = 4,
    workers: int = 0,
    seed: int = 0,
    model: nn.Module | None = None,
    report: Callable[[int, float, Any], None] | None = None,
) -> tuple[nn.Module, list[float]]:
    """Train ``model`` (default a new :func:`tiny_cnn`) for ``steps`` batches of ``datasets``; returns it and each step's loss.

    ``report(step, loss, batch)`` is called after every step. Voxels outside a
    volume (patches are zero-padded there) are left out of the loss.
    """
    torch.manual_seed(seed)
    dataset = BlockDataset(
        root,
        list(datasets),
        patch_size,
        samples_per_epoch=steps * batch_size,
        seed=seed,
        voxel_size=voxel_size,
        label_layer=label_layer,
        return_mask=True,
        weights="equal",  # as many patches of each dataset, whatever its size
    )
    model = model if model is not None else tiny_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # membranes are a minority of voxels: weigh them up so "no membrane anywhere" is not a good answer
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(4.0), reduction="none")
    losses: list[float] = []
    for step, batch in enumerate(DataLoader(dataset, batch_size=batch_size, num_workers=workers), 1):
        target = (batch["label"] == 0).float()[:, None]
        inside = batch["mask"].float()[:, None]
        loss = (loss_fn(model(batch["image"]), target) * inside).sum() / inside.sum().clamp(min=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if report is not None:
            report(step, losses[-1], batch)
    return model, losses


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--root", default="blockio-data")
    parser.add_argument("--datasets", nargs="+", default=["demo"], metavar="ID")
    parser.add_argument("--voxel-size", help="x,y,z nm: resample every dataset to this voxel size")
    parser.add_argument("--label-layer", default="truth")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    voxel_size = [float(v) for v in args.voxel_size.split(",")] if args.voxel_size else None

    def report(step: int, loss: float, batch: Any) -> None:
        print(f"step {step:3d}  loss {loss:.4f}  datasets {','.join(sorted(set(batch['dataset'])))}  patch [z, y, x] {list(batch['image'].shape[2:])}", flush=True)

    train(args.root, args.datasets, voxel_size=voxel_size, label_layer=args.label_layer, steps=args.steps, batch_size=args.batch_size, workers=args.workers, report=report)


if __name__ == "__main__":
    main()
