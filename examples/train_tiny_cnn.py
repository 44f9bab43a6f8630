"""Train a tiny 3-D CNN to find membranes in the demo volume, through BlockDataset.

    blockio demo --no-serve
    python examples/train_tiny_cnn.py --root blockio-data --steps 20

Targets come from the demo's ground truth, ``ROOT/sources/demo/labels.npy``
([z, y, x] cell ids, 0 = membrane), cut at each patch's (x, y, z) offset;
once the demo writes a label layer, pass ``label_layer=`` instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from blockio.data.dataset import BlockDataset

PATCH = (64, 64, 16)  # (x, y, z) voxels


def tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv3d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv3d(8, 16, 3, padding=1), nn.ReLU(),
        nn.Conv3d(16, 1, 1),
    )


def membrane_targets(labels: np.ndarray, offsets: torch.Tensor) -> torch.Tensor:
    """Float [n, 1, z, y, x] membrane masks of the patches at these (x, y, z) offsets."""
    x, y, z = PATCH
    cuts = [labels[oz : oz + z, oy : oy + y, ox : ox + x] == 0 for ox, oy, oz in offsets.tolist()]
    return torch.from_numpy(np.stack(cuts)[:, None].astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="blockio-data")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    labels = np.load(Path(args.root) / "sources" / "demo" / "labels.npy", mmap_mode="r")
    dataset = BlockDataset(args.root, "demo", PATCH, samples_per_epoch=args.steps * args.batch_size, seed=0)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    model = tiny_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    # membranes are ~12% of voxels: weigh them up so "no membrane anywhere" is not a good answer
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(4.0))

    for step, batch in enumerate(loader, 1):
        target = membrane_targets(labels, batch["offset"])
        logits = model(batch["image"])
        loss = loss_fn(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        accuracy = ((logits > 0).float() == target).float().mean()
        print(f"step {step:3d}  loss {loss.item():.4f}  voxel accuracy {accuracy.item():.3f}", flush=True)


if __name__ == "__main__":
    main()
