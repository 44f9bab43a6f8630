"""Sharded precomputed output: the spec per scale, ingest and segmentation writes with shard=True.

Every sharded layer written here is read back by TensorStore and CloudVolume
(independent readers) voxel for voxel; the OME-Zarr copy stays the same.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
from hypothesis import given, settings
from hypothesis import strategies as st

from blockio.cli import main
from precomputed import sharding
from precomputed.catalog import Catalog
from precomputed.checksums import load_manifest
from precomputed.errors import InvalidOption
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation

from .stores import assert_stores_equal_source, read_zarr
from .test_resume import tree_digest

SHAPE_ZYX = (24, 160, 200)
OPTIONS = dict(voxel_size=(4.0, 4.0, 40.0), chunk_size=(32, 32, 8), progress=False, workers=2, task_bytes=1 << 20)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    tmp = tmp_path_factory.mktemp("shard-src")
    vol = np.random.default_rng(5).integers(0, 250, size=SHAPE_ZYX, dtype=np.uint8)
    np.save(tmp / "v.npy", vol)
    return tmp / "v.npy", vol


def _files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


def _tensorstore(layer: Path, mip: int) -> np.ndarray:
    store = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{layer}", "scale_index": mip}).result()
    return np.asarray(store.read().result()).T  # (x, y, z, c) -> [c, z, y, x]


# -- the spec -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    grid=st.tuples(st.integers(1, 40), st.integers(1, 40), st.integers(1, 12)),
    within=st.tuples(st.sampled_from([1, 2, 4, 8, 64]), st.sampled_from([1, 2, 4, 8, 64]), st.sampled_from([1, 2, 4, 64])),
    target_chunks=st.sampled_from([1, 3, 16, 100, 10**6]),
)
def test_spec_shards_are_aligned_boxes_inside_the_task_box(grid: tuple[int, int, int], within: tuple[int, int, int], target_chunks: int) -> None:
    spec = sharding.choose_spec(grid, chunk_bytes=1000, target_bytes=1000 * target_chunks, within=within)
    inside = spec["preshift_bits"] + spec["minishard_bits"]
    # every bit of the Morton code is used: two boxes never share a shard file
    assert inside + spec["shard_bits"] == sum(math.ceil(math.log2(g)) if g > 1 else 0 for g in grid)
    assert 2**inside <= max(1, target_chunks) and spec["minishard_bits"] <= sharding.MAX_MINISHARD_BITS
    shape = sharding.shard_shape(spec, grid)
    assert all(s <= w or g <= w for s, w, g in zip(shape, within, grid))
    # the shape is the set of chunks CloudVolume's spec files together
    indices = np.array([(x, y, z) for z in range(grid[2]) for y in range(grid[1]) for x in range(grid[0])])
    codes = sharding.chunk_codes(indices, grid)
    from cloudvolume.datasource.precomputed.sharding import ShardingSpecification

    spec_obj = ShardingSpecification.from_dict(spec)
    files: dict[str, set[tuple[int, ...]]] = {}
    for index, code in zip(indices, codes):
        files.setdefault(spec_obj.compute_shard_location(int(code)).shard_number, set()).add(tuple(int(v) // s for v, s in zip(index, shape)))
    assert all(len(boxes) == 1 for boxes in files.values())
    assert len(files) == len({b for boxes in files.values() for b in boxes})


# -- ingest ---------------------------------------------------------------------


@pytest.mark.parametrize("compress", ["none", "gzip"])
def test_sharded_ingest_reads_like_the_source_in_every_reader(tmp_path: Path, source: tuple[Path, np.ndarray], compress: str) -> None:
    src, vol = source
    root = tmp_path / "root"
    args = ["ingest", str(src), "--root", str(root), "--id", "s", "--voxel-size", "4,4,40", "--chunk-size", "32,32,8", "--task-mib", "1", "--quiet", "--shard", "--compress", compress]
    assert main(args) == 0
    ingest(src, root, "u", IngestOptions(**OPTIONS, compress=compress))  # type: ignore[arg-type]
    record = Catalog(root).get("s")
    layer = root / record["stores"]["precomputed"]
    info = json.loads((layer / "info").read_text())
    assert all(s["sharding"]["data_encoding"] == ("gzip" if compress == "gzip" else "raw") for s in info["scales"])
    # CloudVolume, zarr-python and TensorStore read every mip as the whole-volume pyramid
    assert_stores_equal_source(root, record, vol[None])
    for mip in range(len(info["scales"])):  # gzip inside shards too (assert_stores_equal_source skips TensorStore for .gz files)
        np.testing.assert_array_equal(_tensorstore(layer, mip), read_zarr(root, record, mip))
    # far fewer objects than the unsharded layer; the OME-Zarr copies are the same files
    assert _files(layer) * 4 < _files(root / "precomputed" / "u" / "image")
    assert tree_digest(root / "zarr" / "s.zarr").keys() == tree_digest(root / "zarr" / "u.zarr").keys()
    # the manifest keeps one digest per chunk, as for an unsharded layer
    for s in info["scales"]:
        manifest = load_manifest(layer, s["key"])
        unsharded = load_manifest(root / "precomputed" / "u" / "image", s["key"])
        assert manifest is not None and unsharded is not None
        assert dict(manifest.chunks) == dict(unsharded.chunks)


def test_killed_sharded_ingest_resumes_bit_identical(tmp_path: Path, source: tuple[Path, np.ndarray], monkeypatch: pytest.MonkeyPatch) -> None:
    src, _ = source
    ingest(src, tmp_path / "clean", "s", IngestOptions(**OPTIONS, shard=True))  # type: ignore[arg-type]
    real = sharding.write_shards
    calls = []

    def dies_after_some(*args: object, **kwargs: object) -> dict[str, str]:
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt  # a kill: no cleanup code runs for it
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sharding, "write_shards", dies_after_some)
    with pytest.raises(KeyboardInterrupt):
        ingest(src, tmp_path / "killed", "s", IngestOptions(**{**OPTIONS, "workers": 1, "scheduler": "sync"}, shard=True))  # type: ignore[arg-type]
    assert list((tmp_path / "killed" / ".staging" / "s" / "image").rglob("*.shard"))
    monkeypatch.setattr(sharding, "write_shards", real)
    ingest(src, tmp_path / "killed", "s", IngestOptions(**OPTIONS, shard=True))  # type: ignore[arg-type]
    assert tree_digest(tmp_path / "killed") == tree_digest(tmp_path / "clean")


def test_unsharded_ingest_after_a_sharded_one_in_the_same_process_writes_chunk_files(tmp_path: Path, source: tuple[Path, np.ndarray]) -> None:
    # writers are cached per thread; the layer's info, read per write, decides
    src, vol = source
    root = tmp_path / "root"
    ingest(src, root, "s", IngestOptions(**OPTIONS, shard=True))  # type: ignore[arg-type]
    ingest(src, root, "s", IngestOptions(**OPTIONS, overwrite=True))  # type: ignore[arg-type]
    layer = root / "precomputed" / "s" / "image"
    assert not list(layer.rglob("*.shard"))
    assert_stores_equal_source(root, Catalog(root).get("s"), vol[None])


# -- segmentation -------------------------------------------------------------------


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory: pytest.TempPathFactory, source: tuple[Path, np.ndarray]) -> tuple[Path, np.ndarray]:
    src, vol = source
    root = tmp_path_factory.mktemp("shard-seg") / "root"
    ingest(src, root, "v", IngestOptions(**OPTIONS))  # type: ignore[arg-type]
    labels = (vol // 50).astype(np.uint32) + (np.arange(SHAPE_ZYX[2], dtype=np.uint32) // 40)[None, None, :] * 10
    write_segmentation(root, "v", "plain", labels, meshes=False)
    write_segmentation(root, "v", "seg", labels, meshes=False, shard=True)
    return root, labels


def test_sharded_segmentation_reads_like_the_unsharded_one(seg_root: tuple[Path, np.ndarray]) -> None:
    from cloudvolume import CloudVolume

    root, labels = seg_root
    layer, plain = root / "precomputed" / "v" / "seg", root / "precomputed" / "v" / "plain"
    info = json.loads((layer / "info").read_text())
    assert all(s.get("sharding") for s in info["scales"])
    assert not [p for p in (layer / info["scales"][0]["key"]).iterdir() if not p.name.endswith(".shard")]
    np.testing.assert_array_equal(_tensorstore(layer, 0)[0], labels)
    for mip, scale in enumerate(info["scales"]):
        want = _tensorstore(plain, mip)
        np.testing.assert_array_equal(_tensorstore(layer, mip), want)
        np.testing.assert_array_equal(np.asarray(CloudVolume(f"file://{layer}", mip=mip, progress=False)[:, :, :]).T, want)
        manifest, plain_manifest = load_manifest(layer, scale["key"]), load_manifest(plain, scale["key"])
        assert manifest is not None and plain_manifest is not None and dict(manifest.chunks) == dict(plain_manifest.chunks)
    assert _files(layer) < _files(plain) / 4
    # the OME-Zarr labels are the same either way
    assert tree_digest(root / "zarr" / "v.zarr" / "labels" / "seg").keys() == tree_digest(root / "zarr" / "v.zarr" / "labels" / "plain").keys()


def test_block_writes_refuse_a_sharded_layer(seg_root: tuple[Path, np.ndarray]) -> None:
    from precomputed.block_writes import write_block

    root, _ = seg_root
    with pytest.raises(InvalidOption, match="sharded"):
        write_block(root, "v", "seg", (0, 0, 0), np.ones((8, 32, 32), dtype=np.uint32))


def test_pack_scale_finishes_a_killed_pack(tmp_path: Path) -> None:
    # killed after the info said sharded, before every chunk file was removed: the next call removes them
    layer = tmp_path / "layer"
    from precomputed.image_layer import create_image_layer, open_layer
    from precomputed.pyramid import plan_pyramid

    mips = plan_pyramid((64, 64, 16), (4.0, 4.0, 40.0), (32, 32, 8), max_mips=1)
    create_image_layer(str(layer), mips=mips, channels=1, dtype=np.dtype("uint8"), chunk_size=(32, 32, 8))
    block = np.arange(64 * 64 * 16, dtype=np.uint8).reshape(1, 16, 64, 64)
    open_layer(str(layer), 0).write_box((0, 0, 0), block)
    spec = sharding.spec_for_scale(layer, 0, target_bytes=2 * 32 * 32 * 8)
    key = json.loads((layer / "info").read_text())["scales"][0]["key"]
    before = sorted(os.listdir(layer / key))
    assert sharding.pack_scale(layer, 0, spec) == 4
    (layer / key / before[0]).write_bytes(b"left over")
    assert sharding.pack_scale(layer, 0, spec) == 0
    assert sorted(os.listdir(layer / key)) == sorted(f"{n}.shard" for n in ("0", "1", "2", "3"))
    np.testing.assert_array_equal(_tensorstore(layer, 0), block)
