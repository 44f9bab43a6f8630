"""BlockDataset: items agree with read_block, samplers, determinism across workers, sharding."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from blockio.data.dataset import FOREGROUND_FRACTION, BlockDataset  # noqa: E402
from blockio.data.options import DatasetOptions  # noqa: E402
from blockio.data.transforms import ClipOutliers  # noqa: E402
from blockio.errors import DatasetNotFound, InvalidRequest  # noqa: E402
from blockio.store import Store  # noqa: E402
from precomputed.catalog import Catalog, now  # noqa: E402
from precomputed.ingest import IngestOptions, ingest  # noqa: E402

VOXEL_SIZE = (8.0, 8.0, 40.0)


def _ingest(tmp: Path, root: Path, dataset: str, array: npt.NDArray[Any], axes: str | None = None) -> None:
    np.save(tmp / f"{dataset}.npy", array)
    options = IngestOptions(voxel_size=VOXEL_SIZE, chunk_size=(32, 32, 32), axes=axes, progress=False, workers=2)
    ingest(tmp / f"{dataset}.npy", root, dataset, options)


def _add_label_layer(root: Path, dataset: str) -> None:
    # a stand-in label layer: the image's own precomputed layer under another name
    shutil.copytree(root / "precomputed" / dataset / "image", root / "precomputed" / dataset / "labels")

    def change(record: dict[str, Any] | None) -> dict[str, Any]:
        assert record is not None
        record = json.loads(json.dumps(record))
        record["layers"]["labels"] = {"type": "segmentation", "path": f"precomputed/{dataset}/labels"}
        record["updated"] = now()
        return record

    Catalog(root).update(dataset, change)


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``a`` 70x60x20 uint8, ``b`` 40x30x10 uint16, ``mc`` 2 channels, ``sparse`` (with ``labels``): zero but one bright corner."""
    tmp = tmp_path_factory.mktemp("torch")
    root = tmp / "root"
    rng = np.random.default_rng(0)
    _ingest(tmp, root, "a", rng.integers(0, 256, (20, 60, 70), dtype=np.uint8))
    _ingest(tmp, root, "b", rng.integers(0, 4000, (10, 30, 40), dtype=np.uint16))
    _ingest(tmp, root, "mc", rng.integers(0, 1000, (2, 12, 40, 50), dtype=np.uint16), axes="czyx")
    sparse = np.zeros((20, 60, 70), dtype=np.uint8)
    sparse[:, 30:, 40:] = 200
    _ingest(tmp, root, "sparse", sparse)
    _add_label_layer(root, "sparse")
    return root


def _items(ds: BlockDataset) -> list[dict[str, Any]]:
    return [ds[i] for i in range(len(ds))]


def _assert_same_items(left: list[dict[str, Any]], right: list[dict[str, Any]]) -> None:
    assert len(left) == len(right)
    for x, y in zip(left, right):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], torch.Tensor):
                assert x[key].dtype == y[key].dtype and torch.equal(x[key], y[key]), key
            else:
                assert x[key] == y[key], key


# -- items -------------------------------------------------------------------


def test_item_keys_shapes_dtypes(store_root: Path) -> None:
    ds = BlockDataset(store_root, "sparse", (16, 24, 8), label_layer="labels", return_mask=True, samples_per_epoch=5)
    assert len(ds) == 5
    item = ds[3]
    assert set(item) == {"image", "label", "mask", "offset", "dataset", "index"}
    assert item["image"].shape == (1, 8, 24, 16) and item["image"].dtype == torch.float32
    assert item["label"].shape == (8, 24, 16) and item["label"].dtype == torch.int64
    assert item["mask"].shape == (8, 24, 16) and item["mask"].dtype == torch.bool
    assert item["offset"].shape == (3,) and item["offset"].dtype == torch.int64
    assert item["dataset"] == "sparse" and item["index"] == 3
    assert ds[-1]["index"] == 4
    with pytest.raises(IndexError):
        ds[5]


@pytest.mark.parametrize("normalize", ["percentile", "zscore", None])
def test_values_equal_read_block(store_root: Path, normalize: str | None) -> None:
    # the patch is taller than b in z (10): padded with zeros, masked
    ds = BlockDataset(store_root, ["a", "b"], (24, 20, 12), normalize=normalize, return_mask=True, samples_per_epoch=12)
    store = Store(store_root)
    seen = set()
    for item in _items(ds):
        offset = tuple(item["offset"].tolist())
        block, mask = store.read_block(item["dataset"], offset, (24, 20, 12), boundary="zero", normalize=normalize, return_mask=True)
        np.testing.assert_array_equal(item["image"].numpy(), block[None].astype(np.float32))
        np.testing.assert_array_equal(item["mask"].numpy(), mask)
        seen.add(item["dataset"])
    assert seen == {"a", "b"}


def test_label_values(store_root: Path) -> None:
    ds = BlockDataset(store_root, "sparse", (32, 32, 8), label_layer="labels", samples_per_epoch=6)
    store = Store(store_root)
    for item in _items(ds):
        offset = tuple(item["offset"].tolist())
        labels = store.read_block("sparse", offset, (32, 32, 8), layer="labels", boundary="zero")
        np.testing.assert_array_equal(item["label"].numpy(), labels.astype(np.int64))


def test_multichannel(store_root: Path) -> None:
    ds = BlockDataset(store_root, "mc", (16, 16, 4), normalize="minmax", samples_per_epoch=4)
    store = Store(store_root)
    for item in _items(ds):
        assert item["image"].shape == (2, 4, 16, 16)
        block = store.read_block("mc", tuple(item["offset"].tolist()), (16, 16, 4), normalize="minmax")
        np.testing.assert_array_equal(item["image"].numpy(), block)


def test_mip_and_transform_get_the_mips_voxel_size(store_root: Path) -> None:
    calls: list[tuple[tuple[int, ...], tuple[float, float, float]]] = []

    def double(block: npt.NDArray[np.float32], voxel_size: tuple[float, float, float]) -> npt.NDArray[np.float32]:
        calls.append((block.shape, voxel_size))
        return block * 2

    ds = BlockDataset(store_root, "a", (16, 16, 4), mip=1, transform=double, samples_per_epoch=3)
    store = Store(store_root)
    for item in _items(ds):
        block = store.read_block("a", tuple(item["offset"].tolist()), (16, 16, 4), mip=1, normalize="percentile")
        np.testing.assert_array_equal(item["image"].numpy(), 2 * block[None])
    assert calls == [((1, 4, 16, 16), (16.0, 16.0, 40.0))] * 3


def test_patch_larger_than_volume(store_root: Path) -> None:
    ds = BlockDataset(store_root, "b", (50, 10, 16), return_mask=True, samples_per_epoch=8)
    for item in _items(ds):
        x, y, z = item["offset"].tolist()
        assert x == 0 and z == 0 and 0 <= y <= 20
        mask = item["mask"]
        assert mask[:10, :, :40].all() and not mask[10:].any() and not mask[:, :, 40:].any()
        assert not item["image"][0, 10:].any() and not item["image"][0, :, :, 40:].any()


def test_reflect_boundary(store_root: Path) -> None:
    ds = BlockDataset(store_root, "b", (50, 10, 16), boundary="reflect", samples_per_epoch=2)
    store = Store(store_root)
    item = ds[0]
    block = store.read_block("b", tuple(item["offset"].tolist()), (50, 10, 16), boundary="reflect", normalize="percentile")
    np.testing.assert_array_equal(item["image"][0].numpy(), block)


# -- samplers ------------------------------------------------------------------


def test_grid_is_iter_blocks_and_covers_every_voxel(store_root: Path) -> None:
    patch, overlap = (32, 24, 8), (4, 0, 2)
    ds = BlockDataset(store_root, ["a", "b"], patch, sampler="grid", overlap=overlap, samples_per_epoch=3)
    store = Store(store_root)
    expected = [(d, box.start) for d in ("a", "b") for box in store.iter_blocks(d, patch, overlap)]
    items = _items(ds)
    assert [(it["dataset"], tuple(it["offset"].tolist())) for it in items] == expected
    assert [it["index"] for it in items] == list(range(len(expected)))
    for dataset in ("a", "b"):
        x, y, z = store.info(dataset)["shape"]
        covered = np.zeros((z, y, x), dtype=bool)
        for it in items:
            if it["dataset"] == dataset:
                ox, oy, oz = it["offset"].tolist()
                covered[oz : oz + patch[2], oy : oy + patch[1], ox : ox + patch[0]] = True
        assert covered.all()


def test_random_defaults_to_grid_count_and_fits(store_root: Path) -> None:
    ds = BlockDataset(store_root, "a", (32, 24, 8))
    assert len(ds) == len(list(Store(store_root).iter_blocks("a", (32, 24, 8))))
    for item in _items(ds):
        x, y, z = item["offset"].tolist()
        assert 0 <= x <= 70 - 32 and 0 <= y <= 60 - 24 and 0 <= z <= 20 - 8


def test_random_is_a_function_of_seed_epoch_index(store_root: Path) -> None:
    def make(seed: int = 7) -> BlockDataset:
        return BlockDataset(store_root, ["a", "b"], (8, 8, 4), seed=seed, samples_per_epoch=10)

    first = _items(make())
    _assert_same_items(first, _items(make()))
    again = make()
    _assert_same_items(first[::-1], [again[i] for i in reversed(range(10))])
    offsets = [tuple(it["offset"].tolist()) for it in first]
    assert offsets != [tuple(it["offset"].tolist()) for it in _items(make(seed=8))]
    again.set_epoch(1)
    epoch1 = _items(again)
    assert offsets != [tuple(it["offset"].tolist()) for it in epoch1]
    again.set_epoch(0)
    _assert_same_items(first, _items(again))
    with pytest.raises(InvalidRequest):
        again.set_epoch(-1)


def test_weights(store_root: Path) -> None:
    def fraction_a(weights: Any) -> float:
        ds = BlockDataset(store_root, ["a", "b"], (2, 2, 1), normalize=None, weights=weights, samples_per_epoch=600)
        return float(np.mean([ds[i]["dataset"] == "a" for i in range(len(ds))]))

    assert fraction_a("size") == pytest.approx(84000 / 96000, abs=0.05)
    assert fraction_a("equal") == pytest.approx(0.5, abs=0.07)
    assert fraction_a([1, 3]) == pytest.approx(0.25, abs=0.06)
    assert fraction_a([0, 1]) == 0.0


def test_foreground_threshold_rejects_empty_patches(store_root: Path) -> None:
    def foreground_fractions(foreground: Any) -> npt.NDArray[np.float64]:
        ds = BlockDataset(store_root, "sparse", (16, 16, 4), normalize="minmax", foreground=foreground, samples_per_epoch=60)
        return np.array([float((ds[i]["image"] >= 0.5).float().mean()) for i in range(len(ds))])

    plain = foreground_fractions(None)
    assert (plain < FOREGROUND_FRACTION).mean() > 0.3
    assert (foreground_fractions(0.5) >= FOREGROUND_FRACTION).all()


def test_foreground_layer(store_root: Path) -> None:
    ds = BlockDataset(store_root, "sparse", (16, 16, 4), label_layer="labels", foreground={"layer": "labels"}, samples_per_epoch=40)
    assert all(bool(ds[i]["label"].any()) for i in range(len(ds)))
    plain = BlockDataset(store_root, "sparse", (16, 16, 4), label_layer="labels", samples_per_epoch=40)
    assert not all(bool(plain[i]["label"].any()) for i in range(len(plain)))


# -- sharding ------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["random", "grid"])
def test_ranks_are_disjoint_and_cover(store_root: Path, sampler: str) -> None:
    whole = BlockDataset(store_root, ["a", "b"], (32, 24, 8), sampler=sampler, samples_per_epoch=11)
    everything = {it["index"]: it for it in _items(whole)}
    seen: list[int] = []
    for rank in range(3):
        shard = BlockDataset(store_root, ["a", "b"], (32, 24, 8), sampler=sampler, samples_per_epoch=11, rank=rank, world_size=3)
        items = _items(shard)
        assert len(shard) == len(range(rank, whole.total, 3))
        assert all(it["index"] % 3 == rank for it in items)
        _assert_same_items(items, [everything[it["index"]] for it in items])
        seen += [it["index"] for it in items]
    assert sorted(seen) == list(range(len(whole)))


# -- processes -----------------------------------------------------------------


def _loader_items(ds: BlockDataset, **kw: Any) -> list[dict[str, Any]]:
    out = []
    for batch in DataLoader(ds, batch_size=3, shuffle=False, **kw):
        for j in range(len(batch["index"])):
            out.append({k: v[j] if isinstance(v, (torch.Tensor, list)) else v for k, v in batch.items()})
    for item in out:
        item["index"] = int(item["index"])
    return out


@pytest.mark.slow
def test_dataloader_workers_give_the_same_samples(store_root: Path) -> None:
    ds = BlockDataset(store_root, ["a", "b"], (24, 20, 12), return_mask=True, seed=3, samples_per_epoch=14, transform=ClipOutliers(0.1, 0.9))
    ds[0]  # the parent opens a store before forking: workers must not use it
    serial = _loader_items(ds)
    _assert_same_items(serial, _loader_items(ds, num_workers=2))
    _assert_same_items(serial, _loader_items(ds, num_workers=2, multiprocessing_context="spawn"))
    ds.set_epoch(2)
    _assert_same_items(_loader_items(ds), _loader_items(ds, num_workers=2))


_INHERITED: list[BlockDataset] = []


def _read_in_forked_child() -> tuple[bool, bool, npt.NDArray[np.float32]]:
    ds = _INHERITED[0]
    inherited = ds._store is not None and ds._store_pid != os.getpid()
    image = ds[0]["image"].numpy()
    return inherited, ds._store_pid == os.getpid(), image


def test_each_process_opens_its_own_store(store_root: Path) -> None:
    ds = BlockDataset(store_root, "a", (16, 16, 4), samples_per_epoch=2)
    parent_store = ds._store
    assert parent_store is not None
    copy = pickle.loads(pickle.dumps(ds))
    assert copy._store is None
    np.testing.assert_array_equal(copy[0]["image"].numpy(), ds[0]["image"].numpy())
    _INHERITED[:] = [ds]
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            inherited, reopened, image = pool.apply(_read_in_forked_child)
    finally:
        _INHERITED.clear()
    assert inherited and reopened
    np.testing.assert_array_equal(image, ds[0]["image"].numpy())
    assert ds._store is parent_store


def test_import_blockio_does_not_import_torch() -> None:
    code = "import blockio, blockio.store, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- bad arguments ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("datasets", "patch", "kw", "message"),
    [
        ("a", (0, 4, 4), {}, "patch_size must be positive"),
        ("a", (4, 4), {}, "patch_size must be three integers"),
        ("a", (4, 4, 4), {"sampler": "sequential"}, "sampler must be one of"),
        ("a", (4, 4, 4), {"overlap": (-1, 0, 0)}, "overlap must be >= 0"),
        ("a", (4, 4, 4), {"overlap": (4, 0, 0)}, "overlap must be >= 0"),
        ("a", (4, 4, 4), {"mip": 9}, "mip must be an integer in 0..2"),
        ("a", (4, 4, 4), {"rank": 2, "world_size": 2}, "rank must be in [0, world_size)"),
        ("a", (4, 4, 4), {"world_size": 0}, "world_size >= 1"),
        ("a", (4, 4, 4), {"rank": -1}, "rank must be a non-negative integer"),
        (["a", "b"], (4, 4, 4), {"weights": [1.0]}, "weights has 1 numbers for 2 datasets"),
        (["a", "b"], (4, 4, 4), {"weights": [1.0, -1.0]}, "weights must be finite, >= 0"),
        (["a", "b"], (4, 4, 4), {"weights": [0, 0]}, "not all 0"),
        (["a", "b"], (4, 4, 4), {"weights": "volume"}, "weights must be 'size', 'equal'"),
        ("a", (4, 4, 4), {"foreground": "yes"}, "foreground must be None"),
        ("a", (4, 4, 4), {"foreground": {"label": "x"}}, "foreground must be None"),
        ("a", (4, 4, 4), {"foreground": 0.5, "sampler": "grid"}, "sampler='random' only"),
        ("a", (4, 4, 4), {"foreground": {"layer": "labels"}}, "dataset 'a' has no layer 'labels'"),
        (["sparse", "a"], (4, 4, 4), {"label_layer": "labels"}, "dataset 'a' has no layer 'labels'"),
        ("a", (4, 4, 4), {"boundary": "clip"}, "boundary must be one of zero, reflect, error"),
        ("a", (100, 4, 4), {"boundary": "error"}, "exceeds dataset 'a'"),
        ("a", (4, 4, 4), {"normalize": "robust"}, "normalize must be one of"),
        ("a", (4, 4, 4), {"samples_per_epoch": 0}, "samples_per_epoch must be positive"),
        ("a", (4, 4, 4), {"seed": -1}, "seed must be a non-negative integer"),
        ("a", (4, 4, 4), {"transform": "clip"}, "transform must be callable"),
        ([], (4, 4, 4), {}, "non-empty list"),
        (["a", "a"], (4, 4, 4), {}, "must not repeat"),
    ],
)
def test_bad_arguments(store_root: Path, datasets: Any, patch: Any, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        BlockDataset(store_root, datasets, patch, **kw)
    assert message in str(info.value)


def test_unknown_dataset(store_root: Path) -> None:
    with pytest.raises(DatasetNotFound, match="no dataset 'nope' in the catalog"):
        BlockDataset(store_root, ["a", "nope"], (4, 4, 4))


def test_dataset_reads_from_a_server_unchanged(live_server, served_root) -> None:  # type: ignore[no-untyped-def]
    """A BlockDataset over HTTP gives the same items as over the local root."""
    local = BlockDataset(served_root, ["v"], patch_size=(32, 32, 8), samples_per_epoch=6, seed=3)
    remote = BlockDataset(live_server.url, ["v"], patch_size=(32, 32, 8), samples_per_epoch=6, seed=3)
    assert len(local) == len(remote) == 6
    for i in range(6):
        a, b = local[i], remote[i]
        assert a["dataset"] == b["dataset"] and torch.equal(a["offset"], b["offset"])
        assert torch.equal(a["image"], b["image"])


# -- options ------------------------------------------------------------------------


def test_options_object_gives_the_same_items_as_keywords(store_root: Path) -> None:
    options = DatasetOptions(label_layer="labels", return_mask=True, normalize="minmax", weights="equal")
    by_object = BlockDataset(store_root, "sparse", (16, 24, 8), samples_per_epoch=4, seed=5, options=options)
    by_keywords = BlockDataset(store_root, "sparse", (16, 24, 8), samples_per_epoch=4, seed=5, label_layer="labels", return_mask=True, normalize="minmax", weights="equal")
    assert by_object.options == by_keywords.options
    _assert_same_items(_items(by_object), _items(by_keywords))


def test_keywords_replace_fields_of_the_options(store_root: Path) -> None:
    options = DatasetOptions(sampler="grid", overlap=(4, 4, 0), return_mask=True)
    ds = BlockDataset(store_root, "a", (16, 16, 4), options=options, return_mask=False)
    assert ds.options.sampler == "grid" and ds.options.overlap == (4, 4, 0) and ds.return_mask is False
    assert options.return_mask is True  # the caller's object is left as it was
    assert "mask" not in ds[0]


def test_options_are_frozen_checked_and_picklable() -> None:
    import dataclasses

    options = DatasetOptions(overlap="2,2,1", transform=ClipOutliers(0.1, 0.9))
    assert options.overlap == (2, 2, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.mip = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(options)) == options
    with pytest.raises(InvalidRequest, match="sampler must be one of"):
        DatasetOptions(sampler="sequential")
    with pytest.raises(TypeError):
        DatasetOptions(0)  # type: ignore[misc]  # keyword-only


def test_unknown_keyword_is_a_type_error(store_root: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword arguments: colour"):
        BlockDataset(store_root, "a", (4, 4, 4), colour="red")
    with pytest.raises(TypeError, match="options must be a DatasetOptions"):
        BlockDataset(store_root, "a", (4, 4, 4), options={"mip": 0})  # type: ignore[arg-type]
