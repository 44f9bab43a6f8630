"""BlockDataset throughput: random patches through a DataLoader, against a TensorStore-backed Dataset.

    python benchmarks/bench_dataset.py [--root ROOT] [--workers 2] [--seconds 10]

Random (unaligned) patches of 64^3 and 128^3 from the bench_blocks.py
volume, normalised to float32 [C, Z, Y, X], through a DataLoader with
``--workers`` workers, timed after a warm-up epoch; the anchor is the same
sampling over TensorStore reading our OME-Zarr store (with its own cache
pool), in the same run. Reports patches/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


class TensorStoreDataset:
    """The anchor: the same random patches read by TensorStore from the OME-Zarr store."""

    def __init__(self, root: Path, patch: int, n: int, lo: float, hi: float) -> None:
        self.root, self.patch, self.n, self.lo, self.hi = root, patch, n, lo, hi
        self._store: Any = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        import tensorstore as ts
        import torch

        if self._store is None:
            self._store = ts.open({"driver": "zarr3", "kvstore": f"file://{self.root / 'zarr/bench.zarr/0'}", "context": {"cache_pool": {"total_bytes_limit": 512 << 20}}}).result()
        shape = self._store.shape
        rng = np.random.default_rng([7, i])
        z, y, x = (int(rng.integers(0, n - self.patch + 1)) for n in shape)
        block = np.asarray(self._store[z : z + self.patch, y : y + self.patch, x : x + self.patch].read().result(), dtype=np.float32)
        block = np.clip((block - self.lo) / (self.hi - self.lo), 0, 1)
        return {"image": torch.from_numpy(block[None])}


def rate(dataset: Any, workers: int, seconds: float) -> float:
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=8, num_workers=workers, persistent_workers=workers > 0)
    for _ in loader:  # warm-up epoch: caches filled, workers started
        pass
    count = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for batch in loader:
            count += batch["image"].shape[0]
            if time.perf_counter() - t0 >= seconds:
                break
    return count / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_blocks import ensure_dataset

    from blockio.data.dataset import BlockDataset
    from blockio.store import Store

    root = args.root or Path(tempfile.mkdtemp(prefix="blockio-bench-")) / "root"
    ensure_dataset(root, 512)
    pct = Store(root).info("bench")["stats"]["percentiles"]
    for patch, n in ((64, 512), (128, 128)):
        ours = BlockDataset(root, ["bench"], patch_size=(patch, patch, patch), samples_per_epoch=n, seed=0)
        anchor = TensorStoreDataset(root, patch, n, pct["1"], pct["99"])
        r_ours = rate(ours, args.workers, args.seconds)
        r_ts = rate(anchor, args.workers, args.seconds)
        print(f"{patch}^3 random patches, {args.workers} workers: BlockDataset {r_ours:.0f} patches/s | TensorStore Dataset {r_ts:.0f} patches/s ({r_ours / r_ts:.2f}x)")


if __name__ == "__main__":
    main()
