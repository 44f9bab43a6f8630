"""The tiny CNN of examples/train_tiny_cnn.py trains in one DataLoader on datasets of two voxel sizes."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from precomputed.ingest import IngestOptions, ingest  # noqa: E402
from precomputed.segmentation import write_segmentation  # noqa: E402
from precomputed.synthetic import make_em_volume  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "train_tiny_cnn.py"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_tiny_cnn", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``sections`` (8x8x40 nm) and ``fib`` (4x4x4 nm): synthetic EM with ground truth in layer ``truth``."""
    tmp = tmp_path_factory.mktemp("train")
    root = tmp / "root"
    for name, shape, voxel in (("sections", (64, 64, 8), (8.0, 8.0, 40.0)), ("fib", (64, 64, 64), (4.0, 4.0, 4.0))):
        volume = make_em_volume(shape, voxel_size=voxel, cell_size_nm=160.0, seed=1)
        np.save(tmp / f"{name}.npy", volume.image)
        ingest(tmp / f"{name}.npy", root, name, IngestOptions(voxel_size=voxel, chunk_size=(32, 32, 32), progress=False, workers=2))
        write_segmentation(root, name, "truth", volume.labels, meshes=False)
    return root


def test_tiny_cnn_trains_on_two_voxel_sizes_in_one_loader(root: Path) -> None:
    example = _example()
    shapes: set[tuple[int, ...]] = set()
    seen: set[str] = set()

    def report(step: int, loss: float, batch: Any) -> None:
        shapes.add(tuple(batch["image"].shape))
        shapes.add(tuple(batch["label"].shape[:1]) + (1,) + tuple(batch["label"].shape[1:]))
        seen.update(batch["dataset"])

    model = example.tiny_cnn()
    before = [p.detach().clone() for p in model.parameters()]
    trained, losses = example.train(root, ["sections", "fib"], voxel_size=(8, 8, 20), patch_size=(32, 32, 8), steps=6, batch_size=4, model=model, report=report)
    assert trained is model
    assert seen == {"sections", "fib"}
    assert shapes == {(4, 1, 8, 32, 32)}  # image and label, every batch, both datasets
    assert len(losses) == 6 and all(np.isfinite(losses))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
