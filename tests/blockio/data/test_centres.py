"""Class-balanced and mask-aware sampling: patch centres by inverse class frequency, or inside a mask layer."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from blockio.data.centres import INDEX_VOXELS, index_mip  # noqa: E402
from blockio.data.dataset import BlockDataset  # noqa: E402
from blockio.errors import InvalidRequest  # noqa: E402
from precomputed.ingest import IngestOptions, ingest  # noqa: E402
from precomputed.segmentation import write_segmentation  # noqa: E402

SHAPE_ZYX = (16, 64, 64)
PATCH = (9, 9, 3)  # odd: the centre voxel is the drawn one


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cells``: layer ``truth`` with a rare class (id 1, a 4x4x4 cube), a common one (id 2, half the volume)
    and background; layer ``roi`` non-zero in x < 16 only."""
    tmp = tmp_path_factory.mktemp("centres")
    root = tmp / "root"
    np.save(tmp / "cells.npy", np.random.default_rng(1).integers(0, 256, SHAPE_ZYX, dtype=np.uint8))
    ingest(tmp / "cells.npy", root, "cells", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 32), progress=False, workers=1))
    truth = np.zeros(SHAPE_ZYX, np.uint32)
    truth[:, :, 32:] = 2
    truth[6:10, 28:32, 20:24] = 1
    write_segmentation(root, "cells", "truth", truth, class_names={1: "rare", 2: "common"}, meshes=False)
    roi = np.zeros(SHAPE_ZYX, np.uint32)
    roi[:, :, :16] = 7
    write_segmentation(root, "cells", "roi", roi, meshes=False)
    return root


def _centre_labels(ds: BlockDataset) -> list[int]:
    cz, cy, cx = (p // 2 for p in reversed(PATCH))
    return [int(ds[i]["label"][cz, cy, cx]) for i in range(len(ds))]


def test_class_balance_draws_every_class_about_equally(root: Path) -> None:
    plain = Counter(_centre_labels(BlockDataset(root, "cells", PATCH, label_layer="truth", samples_per_epoch=300)))
    assert plain[1] < 10  # 64 of 65536 voxels: almost never drawn uniformly
    ds = BlockDataset(root, "cells", PATCH, label_layer="truth", balance="class", samples_per_epoch=300)
    assert ds._sources["cells"].centres is not None and ds._sources["cells"].centres.classes == ("background", "common", "rare")
    balanced = Counter(_centre_labels(ds))
    for segment in (0, 1, 2):
        assert 70 < balanced[segment] < 130, balanced


def test_a_class_map_groups_segments(root: Path) -> None:
    ds = BlockDataset(root, "cells", PATCH, label_layer="truth", balance="class", class_map={1: "cell", 2: "cell"}, samples_per_epoch=300)
    counts = Counter(label != 0 for label in _centre_labels(ds))
    assert 120 < counts[True] < 180  # background and "cell" half each; the rare cube is a sliver of "cell"


def test_mask_keeps_every_centre_inside(root: Path) -> None:
    ds = BlockDataset(root, "cells", PATCH, mask="roi", samples_per_epoch=100)
    xs = [int(ds[i]["offset"][0]) + PATCH[0] // 2 for i in range(len(ds))]
    assert max(xs) < 16 and min(xs) >= 0 and len(set(xs)) > 8


def test_mask_and_balance_together_and_in_physical_units(root: Path) -> None:
    # only background is inside the roi (x < 16): every centre is background there
    ds = BlockDataset(root, "cells", (5, 5, 3), voxel_size=(4, 4, 40), label_layer="truth", balance="class", mask="roi", samples_per_epoch=50)
    centres_nm = [(int(ds[i]["offset"][0]) + 2.5) * 4 for i in range(len(ds))]
    assert max(centres_nm) < 16 * 8
    assert ds._sources["cells"].centres is not None and ds._sources["cells"].centres.classes == ("background",)


def _loader(ds: BlockDataset, **kw: Any) -> list[tuple[str, tuple[int, ...]]]:
    return [(d, tuple(o.tolist())) for batch in DataLoader(ds, batch_size=4, **kw) for d, o in zip(batch["dataset"], batch["offset"])]


@pytest.mark.slow
def test_draws_are_seeded_and_independent_of_workers(root: Path) -> None:
    ds = BlockDataset(root, "cells", PATCH, label_layer="truth", balance="class", mask="roi", samples_per_epoch=16, seed=4)
    serial = _loader(ds)
    assert serial == _loader(ds, num_workers=2)
    assert serial == _loader(ds, num_workers=2, multiprocessing_context="spawn")
    resampled = BlockDataset(root, "cells", PATCH, voxel_size=(4, 4, 20), label_layer="truth", balance="class", samples_per_epoch=8, seed=4)
    images = [b["image"] for b in DataLoader(resampled, batch_size=4)]
    spawned = [b["image"] for b in DataLoader(resampled, batch_size=4, num_workers=2, multiprocessing_context="spawn")]
    assert all(torch.equal(a, b) for a, b in zip(images, spawned)) and len(images) == 2
    assert serial != _loader(BlockDataset(root, "cells", PATCH, label_layer="truth", balance="class", mask="roi", samples_per_epoch=16, seed=5))


def test_index_mip_is_the_finest_that_fits() -> None:
    mips = [{"shape": [1024, 1024, 64]}, {"shape": [512, 512, 64]}, {"shape": [256, 256, 32]}, {"shape": [128, 128, 16]}]
    assert index_mip(mips) == 2 and 256 * 256 * 32 <= INDEX_VOXELS
    assert index_mip([{"shape": [4096, 4096, 4096]}]) == 0


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"balance": "class"}, "needs a label_layer"),
        ({"balance": "frequency", "label_layer": "truth"}, "balance must be None or one of class"),
        ({"balance": "class", "label_layer": "truth", "sampler": "grid"}, "sampler='random' only"),
        ({"mask": "roi", "sampler": "grid"}, "sampler='random' only"),
        ({"mask": "nope"}, "has no layer 'nope'"),
        ({"class_map": {1: "a"}, "label_layer": "truth"}, "class_map applies with balance='class' only"),
        ({"class_map": {"one": "a"}, "label_layer": "truth", "balance": "class"}, "class_map must map segment ids"),
    ],
)
def test_bad_balance_arguments(root: Path, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        BlockDataset(root, "cells", PATCH, **kw)
    assert message in str(info.value)


def test_an_empty_mask_is_refused(root: Path) -> None:
    write_segmentation(root, "cells", "empty", np.zeros(SHAPE_ZYX, np.uint32), meshes=False)
    with pytest.raises(InvalidRequest, match="no non-zero voxel"):
        BlockDataset(root, "cells", PATCH, mask="empty")
