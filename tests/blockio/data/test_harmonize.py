"""Harmonised intensities: percentile windows by default, histogram matching to a reference dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from blockio.data.dataset import BlockDataset  # noqa: E402
from blockio.data.harmonize import HistogramMatch, parse_harmonize  # noqa: E402
from blockio.errors import DatasetNotFound, InvalidRequest  # noqa: E402
from blockio.store import Store  # noqa: E402
from precomputed.ingest import IngestOptions, ingest  # noqa: E402

SHAPE_ZYX = (8, 48, 48)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``ref``: uint8 values v; ``gamma``: the same voxels as round(4000 (v / 255)^2), uint16; ``dim``: v // 4."""
    tmp = tmp_path_factory.mktemp("harmonize")
    root = tmp / "root"
    v = np.random.default_rng(9).integers(0, 256, SHAPE_ZYX).astype(np.float64)
    for name, array in (("ref", v.astype(np.uint8)), ("gamma", np.round(4000 * (v / 255) ** 2).astype(np.uint16)), ("dim", (v // 4).astype(np.uint8))):
        np.save(tmp / f"{name}.npy", array)
        ingest(tmp / f"{name}.npy", root, name, IngestOptions(voxel_size=(8, 8, 40), chunk_size=(32, 32, 32), progress=False, workers=1))
    return root


def _patch(root: Path, dataset: str, offset: tuple[int, int, int], **kw: object) -> np.ndarray:
    ds = BlockDataset(root, [dataset, "ref"] if dataset != "ref" else ["ref"], (16, 16, 4), sampler="grid", **kw)  # type: ignore[arg-type]
    for i in range(len(ds)):
        item = ds[i]
        if item["dataset"] == dataset and tuple(item["offset"].tolist()) == offset:
            return item["image"][0].numpy()  # type: ignore[no-any-return]
    raise AssertionError(f"no grid box at {offset}")


def test_the_default_maps_each_percentile_window_onto_one_range(root: Path) -> None:
    # a linear change of gain is undone by each dataset's own [p1, p99] window
    ref, dim = _patch(root, "ref", (16, 16, 0)), _patch(root, "dim", (16, 16, 0))
    assert 0 <= dim.min() and dim.max() <= 1 and 0 <= ref.min() and ref.max() <= 1
    assert np.abs(ref - dim).mean() < 0.02


def test_histogram_matching_undoes_a_nonlinear_change(root: Path) -> None:
    offset = (16, 16, 4)
    ref = _patch(root, "ref", offset)
    plain = _patch(root, "gamma", offset)
    matched = _patch(root, "gamma", offset, harmonize="histogram:ref")
    assert np.abs(plain - ref).mean() > 0.1  # percentile windows cannot undo a square
    assert np.abs(matched - ref).mean() < 0.02 and np.abs(matched - ref).max() < 0.1
    # the reference itself is only normalised
    np.testing.assert_array_equal(_patch(root, "ref", offset, harmonize="histogram:ref"), ref)


def test_matching_maps_the_histogram_onto_the_reference_quantiles(root: Path) -> None:
    store = Store(root)
    gamma, ref = store.info("gamma")["stats"], store.info("ref")["stats"]
    match = HistogramMatch.of(gamma, ref, 1, dataset="gamma", reference="ref")
    raw = store.read_block("gamma", (0, 0, 0), (48, 48, 8))[None]
    mapped = match(raw)
    for q in (10, 50, 90):
        assert np.percentile(mapped, q) == pytest.approx(np.percentile(store.read_block("ref", (0, 0, 0), (48, 48, 8)), q), abs=4)


def test_matched_patches_keep_zero_outside_the_volume(root: Path) -> None:
    ds = BlockDataset(root, "gamma", (64, 16, 4), harmonize="histogram:ref", return_mask=True, samples_per_epoch=1)
    item = ds[0]
    assert not item["image"][0][~item["mask"]].any() and item["image"][0][item["mask"]].any()


def test_bad_harmonize(root: Path) -> None:
    for value in ("histogram", "histogram:", "zscore", None):
        with pytest.raises(InvalidRequest, match="harmonize must be"):
            parse_harmonize(value)
    with pytest.raises(DatasetNotFound):
        BlockDataset(root, "gamma", (8, 8, 4), harmonize="histogram:nope")
