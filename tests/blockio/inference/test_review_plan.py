"""Choosing review items: largest, disagreement (split / merge from the contingency table), random, low-confidence refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blockio.cli.main import main
from blockio.database import open_database
from blockio.errors import InvalidRequest
from blockio.inference.review_plan import LOW_CONFIDENCE_NEEDS, plan_review
from blockio.inference.segment_places import segment_places
from blockio.review_queues import ReviewQueues
from blockio.store import Store
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation

SHAPE_ZYX = (16, 64, 64)


def truth_labels() -> np.ndarray:
    """A 4 x 4 grid of 16 x 16 columns, ids 1..16, through z; the last z plane unlabelled (0)."""
    z, y, x = np.indices(SHAPE_ZYX)
    labels = (1 + (y // 16) * 4 + (x // 16)).astype(np.uint32)
    labels[-1] = 0
    return labels


def pred_labels() -> np.ndarray:
    """The truth with columns 1 and 2 merged (into 1) and column 6 cut in two along y (6 and 60)."""
    labels = truth_labels()
    labels[labels == 2] = 1
    _z, y, _x = np.indices(SHAPE_ZYX)
    labels[(labels == 6) & (y % 16 >= 8)] = 60
    labels[-1] = truth_labels()[0]  # prediction labels the plane truth leaves out
    labels[-1][labels[-1] == 2] = 1
    return labels


@pytest.fixture(scope="module")
def plan_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("plan")
    image = np.random.default_rng(0).integers(0, 255, size=SHAPE_ZYX, dtype=np.uint8)
    np.save(tmp / "image.npy", image)
    root = tmp / "root"
    ingest(tmp / "image.npy", root, "em", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 8), progress=False, workers=1))
    write_segmentation(root, "em", "truth", truth_labels())
    write_segmentation(root, "em", "pred", pred_labels())
    return root


def _inside(item: dict, labels: np.ndarray) -> bool:
    x, y, z = item["position"]
    return int(labels[z, y, x]) == item["segment"]


def test_disagreement_finds_the_split_and_the_merge(plan_root: Path) -> None:
    plan = plan_review(Store(plan_root), "em", pred="pred", truth="truth", strategy="disagreement", size=10)
    assert plan.other == "truth" and plan.strategy == "disagreement"
    kinds = [(item["kind"], item["segments"], item["other"]["segments"], item["voxels"]) for item in plan.items]
    column = 16 * 16 * 15  # truth voxels of one column (its last plane is 0)
    # pred 1 holds truth 1 and 2 (truth splits it); pred 6 and 60 are both in truth 6 (truth merges them)
    assert kinds == [("split", [1], [1, 2], column), ("merge", [6, 60], [6], column // 2)]
    assert "split in truth into 2 segments" in plan.items[0]["reason"]
    assert all(_inside(item, pred_labels()) for item in plan.items)


def test_disagreement_reads_in_slabs_the_same(plan_root: Path) -> None:
    whole = plan_review(Store(plan_root), "em", pred="pred", vs="truth", strategy="disagreement")
    slabbed = plan_review(Store(plan_root), "em", pred="pred", vs="truth", strategy="disagreement", slab_voxels=64 * 64 * 3)
    assert whole.items == slabbed.items and len(whole.items) == 2


def test_largest_comes_from_segment_properties(plan_root: Path) -> None:
    plan = plan_review(Store(plan_root), "em", pred="pred", strategy="largest", size=3)
    ids, counts = np.unique(pred_labels(), return_counts=True)
    assert plan.items[0]["segment"] == 1 and plan.items[0]["voxels"] == int(counts[ids == 1][0]) == 2 * 16 * 16 * 16
    assert [item["voxels"] for item in plan.items] == sorted((item["voxels"] for item in plan.items), reverse=True)
    assert plan.other is None and all(_inside(item, pred_labels()) for item in plan.items)


def test_random_is_seeded(plan_root: Path) -> None:
    store = Store(plan_root)
    first = plan_review(store, "em", pred="pred", strategy="random", size=5, seed=7)
    again = plan_review(store, "em", pred="pred", strategy="random", size=5, seed=7)
    other = plan_review(store, "em", pred="pred", strategy="random", size=5, seed=8)
    assert first.items == again.items and len({item["segment"] for item in first.items}) == 5
    assert [i["segment"] for i in first.items] != [i["segment"] for i in other.items]


def test_low_confidence_refuses_naming_the_score_layer(plan_root: Path) -> None:
    with pytest.raises(InvalidRequest, match="needs a score layer") as caught:
        plan_review(Store(plan_root), "em", pred="pred", strategy="low-confidence")
    assert str(caught.value) == LOW_CONFIDENCE_NEEDS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"strategy": "disagreement"}, "give --vs LAYER"),
        ({"strategy": "largest", "pred": "image"}, "image layer, not a segmentation"),
        ({"strategy": "largest", "pred": "nope"}, "no layer 'nope'"),
        ({"strategy": "best"}, "strategy must be one of"),
        ({"strategy": "largest", "size": 0}, "size must be"),
    ],
)
def test_bad_plans_are_refused(plan_root: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        plan_review(Store(plan_root), "em", **{"pred": "pred", **kwargs})


def test_segment_places_lie_in_their_segment_near_its_centre(plan_root: Path) -> None:
    places = segment_places(Store(plan_root), "em", "truth", [1, 16, 999], voxel_size=(8, 8, 40))
    assert set(places) == {1, 16}  # 999 is not in the layer
    x, y, z = places[1]
    assert truth_labels()[z, y, x] == 1 and abs(x - 7.5) <= 1 and abs(y - 7.5) <= 1 and abs(z - 7) <= 1


def test_cli_plans_a_queue_in_the_database(plan_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    root = tmp_path / "root"
    shutil.copytree(plan_root, root)
    args = ["review", "plan", "--root", str(root), "em", "--pred", "pred", "--truth", "truth", "--strategy", "disagreement", "--name", "q1"]
    assert main(args) == 0
    assert "queue q1: 2 items" in capsys.readouterr().out
    queue = ReviewQueues(open_database(root=root)).get("q1")
    assert queue is not None and queue["progress"] == {"open": 2, "assigned": 0, "done": 0, "total": 2}
    assert main(args) == 1  # exists
    assert "give --replace" in capsys.readouterr().err
    assert main([*args, "--replace", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["items"][0]["kind"] == "split"
    assert main(["review", "plan", "--root", str(root), "em", "--pred", "pred", "--strategy", "low-confidence"]) == 1
    assert "needs a score layer" in capsys.readouterr().err
    assert main(["review", "list", "--root", str(root)]) == 0
    assert "q1: em/pred by disagreement: 0 of 2 done" in capsys.readouterr().out
