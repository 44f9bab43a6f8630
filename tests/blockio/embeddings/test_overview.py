"""The PCA overview of a cell set: a 3-channel uint8 precomputed layer at the cell grid, read back by TensorStore."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blockio.embeddings.overview import OVERVIEW_KIND, overview_layers, overview_name, pca_rgb, write_overview
from blockio.embeddings.run import run_embedding
from blockio.errors import InvalidRequest
from blockio.store import open_store
from precomputed.ingest import IngestOptions, ingest
from precomputed.segmentation import write_segmentation
from precomputed.synthetic import make_em_volume

SHAPE = (96, 96, 16)
VOXEL = (8.0, 8.0, 40.0)
CELL = (8, 8, 2)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("overview")
    volume = make_em_volume(SHAPE, voxel_size=VOXEL, seed=2)
    np.save(tmp / "em.npy", volume.image)
    root = tmp / "root"
    ingest(tmp / "em.npy", root, "em", IngestOptions(voxel_size=VOXEL, chunk_size=(32, 32, 8), progress=False, workers=1))
    write_segmentation(root, "em", "cells", volume.labels, provenance={"model": "truth"})
    run_embedding(root, "em", name="features", cell=CELL, block=(48, 48, 16), progress=False, dtype="float32")
    return root


def test_the_overview_is_the_first_three_principal_components_as_rgb(root: Path) -> None:
    import zarr

    meta = write_overview(root, "em", "features")
    record = open_store(root).info("em")
    layer = overview_name("features")
    assert record["layers"][layer] == meta and meta["type"] == "image" and meta["path"] == f"precomputed/em/{layer}"
    assert meta["provenance"]["kind"] == OVERVIEW_KIND and meta["provenance"]["embedding"] == "features"
    assert overview_layers(record) == {layer: "features"}
    ratios = meta["provenance"]["explained_variance_ratio"]
    assert len(ratios) == 3 and ratios[0] >= ratios[1] >= ratios[2] > 0 and sum(ratios) < 1

    ts = pytest.importorskip("tensorstore")
    vol = ts.open({"driver": "neuroglancer_precomputed", "kvstore": f"file://{root / meta['path']}"}, read=True).result()
    grid = [s // c for s, c in zip(SHAPE, CELL)]
    assert list(vol.shape) == [*grid, 3] and vol.dtype == ts.uint8  # x, y, z, channel
    info = json.loads((root / meta["path"] / "info").read_text())
    assert info["num_channels"] == 3 and [s["resolution"] for s in info["scales"]] == [[64, 64, 80]]  # the cell's size in nm
    rgb = np.asarray(vol.read().result())  # [x, y, z, c]

    # an independent PCA: eigenvectors of the correlation matrix of the stored vectors
    vectors = np.asarray(zarr.open_array(str(root / "embeddings/em/features"))[...], dtype=np.float64)
    flat = vectors.reshape(vectors.shape[0], -1).T
    z = (flat - flat.mean(axis=0)) / flat.std(axis=0)
    values, vecs = np.linalg.eigh(np.cov(z, rowvar=False))
    order = np.argsort(values)[::-1][:3]
    np.testing.assert_allclose(ratios, values[order] / values.sum(), rtol=1e-3)
    cells = rgb.transpose(2, 1, 0, 3).reshape(-1, 3).astype(np.float64)  # key order: x fastest
    for channel, axis in enumerate(order):
        component = z @ vecs[:, axis]
        r = np.corrcoef(component, cells[:, channel])[0, 1]
        assert abs(r) > 0.97, (channel, r)
    assert cells.min() == 0 and cells.max() == 255  # the 1st-99th percentile window fills the range

    # the cells nearest in embedding space look alike in the overview, far more than random pairs
    sims = open_store(root).embeddings("em", "features")
    near, far = [], []
    rng = np.random.default_rng(0)
    for key in rng.choice(len(flat), 30, replace=False):
        i, j, k = key % grid[0], (key // grid[0]) % grid[1], key // (grid[0] * grid[1])
        hits = sims.knn(position=(i * CELL[0], j * CELL[1], k * CELL[2]), k=3)["results"]
        near += [np.abs(cells[key] - cells[int(h["key"])]).sum() for h in hits]
        far += [np.abs(cells[key] - cells[int(o)]).sum() for o in rng.choice(len(flat), 3)]
    assert np.mean(near) < 0.5 * np.mean(far)


def test_pca_signs_are_fixed_and_a_constant_dimension_does_no_harm() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=500)
    noise = rng.normal(size=(500, 4)) * 0.1
    data = np.stack([t, 2 * t, rng.normal(size=500), np.zeros(500)], axis=1) + noise * [1, 1, 1, 0]  # one shared factor
    rgb, fit = pca_rgb(data)
    perm = rng.permutation(len(data))
    again, _ = pca_rgb(data[perm])
    assert rgb.dtype == np.uint8 and rgb.shape == (500, 3)
    for axis in fit["axes"]:
        assert axis[np.abs(axis).argmax()] > 0
    assert np.corrcoef(rgb[:, 0], t)[0, 1] > 0.95  # the shared factor is the first axis: red
    np.testing.assert_array_equal(again, rgb[perm])  # the same colour for the same row, whatever the order
    with pytest.raises(InvalidRequest):
        pca_rgb(np.zeros((0, 3)))


def test_an_overview_goes_stale_with_its_set_and_segment_sets_have_none(root: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "root"
    shutil.copytree(root, copy)
    write_overview(copy, "em", "features")
    run_embedding(copy, "em", name="features", cell=(16, 16, 4), block=(48, 48, 16), progress=False, overwrite=True)
    assert overview_layers(open_store(copy).info("em")) == {}  # computed anew: the old colours are not offered
    write_overview(copy, "em", "features")
    assert overview_layers(open_store(copy).info("em")) == {"features-pca": "features"}
    run_embedding(copy, "em", name="segs", segments="cells", block=(48, 48, 16), progress=False)
    with pytest.raises(InvalidRequest, match="per segment"):
        write_overview(copy, "em", "segs")
