"""A sharded image layer written by igneous itself (tests/data) reads voxel for voxel."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts

from blockio.store import Store
from precomputed.ingest import IngestOptions, ingest

FIXTURE = Path(__file__).resolve().parents[2] / "data" / "igneous_sharded_image"


def _volume_zyx() -> np.ndarray:
    x, y, z = np.meshgrid(np.arange(96), np.arange(80), np.arange(40), indexing="ij")
    return (((x // 3) * 7 + (y // 3) * 3 + z * 11) % 251).astype(np.uint8).transpose(2, 1, 0)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("igneous")
    np.save(tmp / "v.npy", np.zeros((40, 80, 96), np.uint8))
    ingest(tmp / "v.npy", tmp / "root", "v", IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 16), progress=False, workers=1))
    layer = tmp / "root" / "precomputed" / "v" / "image"
    shutil.rmtree(layer)  # the catalogued layer becomes igneous' sharded one, mip 0 only
    shutil.copytree(FIXTURE, layer, ignore=shutil.ignore_patterns("README.md"))
    return tmp / "root"


def test_the_fixture_is_sharded() -> None:
    import json

    scale = json.loads((FIXTURE / "info").read_text())["scales"][0]
    assert scale["sharding"]["@type"] == "neuroglancer_uint64_sharded_v1"
    assert sorted(p.name for p in (FIXTURE / scale["key"]).iterdir()) == ["0.shard", "1.shard"]


@pytest.mark.parametrize(("offset", "size"), [((0, 0, 0), (96, 80, 40)), ((5, 17, 3), (70, 50, 30)), ((31, 31, 15), (2, 2, 2))])
def test_igneous_shards_read_like_tensorstore_and_the_source(root: Path, offset: tuple[int, int, int], size: tuple[int, int, int]) -> None:
    block = Store(root).read_block("v", offset, size)
    (x0, y0, z0), (sx, sy, sz) = offset, size
    np.testing.assert_array_equal(block, _volume_zyx()[z0 : z0 + sz, y0 : y0 + sy, x0 : x0 + sx])
    layer = root / "precomputed" / "v" / "image"
    spec = {"driver": "neuroglancer_precomputed", "kvstore": f"file://{layer}", "scale_index": 0}
    expected = np.asarray(ts.open(spec).result()[x0 : x0 + sx, y0 : y0 + sy, z0 : z0 + sz, 0].read().result()).transpose(2, 1, 0)
    np.testing.assert_array_equal(block, expected)
