"""blockio embed: block-size independence, resumption after a kill, the catalog entry, stale sets, segments."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from blockio.embeddings.run import run_embedding
from blockio.errors import InvalidRequest
from blockio.store import open_store
from precomputed.catalog import Catalog
from tests.blockio.inference.conftest import make_small_root

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_small_root(tmp_path_factory.mktemp("embed"))  # dataset 'em', 64 x 64 x 16, 16^3 chunks


def _array(root: Path, name: str) -> np.ndarray:
    return np.asarray(zarr.open_array(str(root / "embeddings" / "em" / name), mode="r")[...])


def test_cell_vectors_do_not_depend_on_the_block_size(root: Path) -> None:
    run_embedding(root, "em", name="small-blocks", cell=(8, 8, 4), block=(16, 16, 8), progress=False)
    run_embedding(root, "em", name="one-block", cell=(8, 8, 4), block=(64, 64, 16), progress=False)
    a, b = _array(root, "small-blocks"), _array(root, "one-block")
    assert a.shape == (12, 4, 8, 8) and a.dtype == np.float16
    assert np.array_equal(a, b)
    assert np.ptp(a.astype(np.float32), axis=(1, 2, 3)).min() > 0  # not a constant


def test_the_catalog_and_the_array_describe_the_set(root: Path) -> None:
    entry = run_embedding(root, "em", name="described", cell=(16, 16, 8), block=(32, 32, 16), progress=False)
    record = Catalog(root).get("em")
    assert record["embeddings"]["described"] == entry
    assert entry["granularity"] == "cell" and entry["dimension"] == 12 and entry["dtype"] == "float16" and entry["metric"] == "l2"
    assert entry["count"] == 4 * 4 * 2 and entry["grid"] == [4, 4, 2]
    assert entry["cell"] == {"voxels": [16, 16, 8], "nm": [128.0, 128.0, 320.0]}
    assert entry["index"]["engine"] == "sqlite" and "sqlite-vec" in entry["index"]["version"]
    assert entry["model"]["name"] == "blockio.embeddings.models:multiscale_features" and len(entry["model"]["weights_hash"]) == 64
    assert entry["input"]["signature"] == {"image": record["layers"]["image"]["version"]}
    attrs = zarr.open_array(str(root / "embeddings/em/described"), mode="r").attrs["blockio_embedding"]
    assert attrs["halo"] == [17, 17, 17] and attrs["input"]["signature"] == entry["input"]["signature"]
    index = open_store(root).embeddings("em", "described").index
    assert index.count() == 32
    # the index holds the array's (float16) values, keyed x fastest
    np.testing.assert_array_equal(index.get([5]).vectors[0], _array(root, "described")[:, 0, 1, 1].astype(np.float32))
    with pytest.raises(InvalidRequest, match="already"):
        run_embedding(root, "em", name="described", cell=(8, 8, 8), progress=False)


def test_a_killed_embed_resumes_with_identical_vectors(root: Path, tmp_path: Path) -> None:
    run_embedding(root, "em", name="reference", cell=(8, 8, 4), block=(16, 16, 8), progress=False)
    command = [sys.executable, "-m", "blockio.cli", "embed", "--root", str(root), "em", "--name", "resumed", "--model", "tests.blockio.embeddings.dying_model:model",
               "--cell", "8,8,4", "--block", "16,16,8", "--scheduler", "sync", "--quiet"]
    env = {**os.environ, "BLOCKIO_TEST_DIE_AFTER": "9", "PYTHONPATH": str(REPO)}
    killed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert killed.returncode == 9, killed.stderr
    staging = root / ".staging" / "em" / "resumed-embed"
    done = sorted(staging.glob("c-*.done"))
    assert len(done) == 9 and not (root / "embeddings/em/resumed").exists()
    env.pop("BLOCKIO_TEST_DIE_AFTER")
    finished = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert finished.returncode == 0, finished.stderr
    assert np.array_equal(_array(root, "resumed"), _array(root, "reference"))
    assert not staging.exists()
    assert open_store(root).embeddings("em", "resumed").index.count() == 8 * 8 * 4


def test_rewriting_the_image_makes_the_set_stale(tmp_path: Path) -> None:
    from precomputed.catalog import new_version

    root = make_small_root(tmp_path)
    run_embedding(root, "em", name="f", cell=(16, 16, 16), progress=False)
    assert open_store(root).embeddings("em", "f").stale == []

    def rewrite(record: dict) -> dict:
        record["layers"]["image"]["version"] = new_version()
        return record

    Catalog(root).update("em", rewrite)
    assert "rewritten" in open_store(root).embeddings("em", "f").stale[0]


def test_one_vector_per_segment_with_uint64_ids(root: Path) -> None:
    from precomputed.segmentation import write_segmentation

    labels = np.zeros((16, 64, 64), dtype=np.uint64)
    labels[:, :, :32] = 2**64 - 1  # the left half, across every task
    labels[:, 10:30, 40:60] = 7
    write_segmentation(root, "em", "parts", labels, dtype="uint64", meshes=False, progress=False, overwrite=True)
    small = run_embedding(root, "em", name="per-segment", segments="parts", block=(16, 16, 16), progress=False)
    run_embedding(root, "em", name="per-segment-2", segments="parts", block=(64, 64, 16), progress=False)
    assert small["granularity"] == "segment" and small["count"] == 2
    group = zarr.open_group(str(root / "embeddings/em/per-segment"), mode="r")
    assert np.asarray(group["ids"][...]).tolist() == [7, 2**64 - 1]
    np.testing.assert_allclose(np.asarray(group["centroids"][...])[1], [15.5, 31.5, 7.5])
    np.testing.assert_array_equal(np.asarray(group["boxes"][...])[0], [40, 10, 0, 60, 30, 16])
    other = zarr.open_group(str(root / "embeddings/em/per-segment-2"), mode="r")
    np.testing.assert_allclose(np.asarray(group["vectors"][...], np.float32), np.asarray(other["vectors"][...], np.float32), rtol=2e-3, atol=2e-3)
    sims = open_store(root).embeddings("em", "per-segment")
    answer = sims.knn(segment=2**64 - 1, k=5)
    assert [r["segment"] for r in answer["results"]] == ["7"]  # itself left out
    assert sims.key_at((3, 3, 3)) == 2**64 - 1
    assert "pred=parts" in answer["results"][0]["link"]
