"""BlockDataset in physical units: datasets of different voxel sizes give patches of one shape, equal to scipy's zoom."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import scipy.ndimage as ndi

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from blockio.boxes import VoxelBox, grid_boxes  # noqa: E402
from blockio.data.dataset import BlockDataset  # noqa: E402
from blockio.data.physical import TargetGrid, choose_mip  # noqa: E402
from blockio.errors import InvalidRequest  # noqa: E402
from blockio.store import Store  # noqa: E402
from precomputed.ingest import IngestOptions, ingest  # noqa: E402
from precomputed.segmentation import write_segmentation  # noqa: E402

TARGET = (8.0, 8.0, 20.0)
PATCH = (16, 16, 8)
COARSE_ZYX = (12, 64, 64)  # 8 x 8 x 40 nm: 512 x 512 x 480 nm
FINE_ZYX = (60, 64, 64)  # 4 x 4 x 4 nm: 256 x 256 x 240 nm


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], high: int, dtype: Any) -> npt.NDArray[Any]:
    field = ndi.gaussian_filter(rng.random(shape), 2.0)
    field = (field - field.min()) / np.ptp(field)
    return (field * high).astype(dtype)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``coarse`` (8x8x40 nm, uint8, label layer ``truth``) and ``fine`` (4x4x4 nm, uint16, ``truth``)."""
    tmp = tmp_path_factory.mktemp("physical")
    root = tmp / "root"
    rng = np.random.default_rng(4)
    for name, shape, voxel, high, dtype in (("coarse", COARSE_ZYX, (8, 8, 40), 255, np.uint8), ("fine", FINE_ZYX, (4, 4, 4), 4000, np.uint16)):
        np.save(tmp / f"{name}.npy", _smooth(rng, shape, high, dtype))
        ingest(tmp / f"{name}.npy", root, name, IngestOptions(voxel_size=voxel, chunk_size=(32, 32, 32), progress=False, workers=2))
        labels = rng.integers(1, 5, size=shape).astype(np.uint32)
        np.save(tmp / f"{name}-truth.npy", labels)
        write_segmentation(root, name, "truth", labels, meshes=False)
    return root


def _expected(store: Store, dataset: str, mip: int, scale_zyx: tuple[float, float, float], sigma_zyx: tuple[float, float, float]) -> npt.NDArray[np.float32]:
    """The whole mip, normalised, smoothed where it shrinks, then zoomed with scipy to the target grid."""
    bounds = store.bounds(dataset, mip)
    source = store.read_block(dataset, bounds.start, bounds.size, mip=mip, normalize="percentile").astype(np.float64)
    if any(sigma_zyx):
        source = ndi.gaussian_filter(source, sigma_zyx, mode="reflect")
    out_shape = tuple(round(n / s) for n, s in zip(source.shape, scale_zyx))
    factors = [m / n for m, n in zip(out_shape, source.shape)]
    return ndi.zoom(source, factors, order=1, grid_mode=True, mode="nearest").astype(np.float32)  # type: ignore[no-any-return]


def test_choose_mip_is_the_coarsest_nowhere_coarser_than_the_target() -> None:
    iso = [(4, 4, 4), (8, 8, 8), (16, 16, 16)]
    assert choose_mip(iso, (8, 8, 20)) == 1
    assert choose_mip(iso, (7.9, 8, 20)) == 0
    assert choose_mip(iso, (2, 2, 2)) == 0  # finer than mip 0 everywhere: mip 0, interpolated up
    aniso = [(8, 8, 40), (16, 16, 40), (32, 32, 40), (64, 64, 80)]
    assert choose_mip(aniso, (8, 8, 8)) == 0
    assert choose_mip(aniso, (32, 32, 8)) == 2  # z is at its finest already; x and y may coarsen
    assert choose_mip(aniso, (64, 64, 100)) == 3


def test_target_bounds_hold_the_target_voxels_inside_the_volume() -> None:
    grid = TargetGrid(0, (8.0, 8.0, 40.0), (8.0, 8.0, 20.0), VoxelBox((0, 0, 0), (64, 64, 12)), ((0.0, 0.0, 0.0), (512.0, 512.0, 480.0)))
    assert grid.target_bounds() == VoxelBox((0, 0, 0), (64, 64, 24))
    odd = TargetGrid(0, (4.0, 4.0, 4.0), (10.0, 10.0, 10.0), VoxelBox((0, 0, 0), (33, 10, 2)), ((0.0, 0.0, 0.0), (132.0, 40.0, 8.0)))
    assert odd.target_bounds() == VoxelBox((0, 0, 0), (13, 4, 1))  # a volume thinner than a target voxel keeps one


def test_two_voxel_sizes_give_one_patch_shape_in_one_loader(root: Path) -> None:
    ds = BlockDataset(root, ["coarse", "fine"], PATCH, voxel_size=TARGET, label_layer="truth", weights="equal", samples_per_epoch=12, seed=1)
    seen = set()
    for batch in DataLoader(ds, batch_size=4):
        assert batch["image"].shape == (4, 1, 8, 16, 16) and batch["label"].shape == (4, 8, 16, 16)
        seen.update(batch["dataset"])
    assert seen == {"coarse", "fine"}
    assert ds._sources["coarse"].mip == 0 and ds._sources["fine"].mip == 1
    assert "voxel_size=[8.0, 8.0, 20.0]" in repr(ds)


@pytest.mark.parametrize(("dataset", "mip", "scale_zyx", "sigma_zyx"), [("coarse", 0, (0.5, 1.0, 1.0), (0.0, 0.0, 0.0)), ("fine", 1, (2.5, 1.0, 1.0), (0.75, 0.0, 0.0))])
def test_resampled_patches_equal_scipy_zoom_of_the_source(root: Path, dataset: str, mip: int, scale_zyx: Any, sigma_zyx: Any) -> None:
    # coarse: z of 40 nm interpolated up to 20 nm; fine: read at mip 1 (8 nm), z smoothed and shrunk to 20 nm
    ds = BlockDataset(root, dataset, PATCH, voxel_size=TARGET, samples_per_epoch=10, seed=2)
    expected = _expected(Store(root), dataset, mip, scale_zyx, sigma_zyx)
    offsets = set()
    for i in range(len(ds)):
        item = ds[i]
        x, y, z = item["offset"].tolist()
        offsets.add((x, y, z))
        want = expected[z : z + PATCH[2], y : y + PATCH[1], x : x + PATCH[0]]
        np.testing.assert_allclose(item["image"][0].numpy(), want, atol=2e-5)
    assert len(offsets) > 5  # not one patch ten times


def test_labels_take_the_source_voxel_under_each_centre(root: Path) -> None:
    truth = np.load(root.parent / "coarse-truth.npy")
    ds = BlockDataset(root, "coarse", PATCH, voxel_size=TARGET, label_layer="truth", samples_per_epoch=6, seed=3)
    for i in range(len(ds)):
        item = ds[i]
        x, y, z = item["offset"].tolist()
        zs = ((z + np.arange(PATCH[2]) + 0.5) * 0.5).astype(int)  # 20 nm target voxels in 40 nm sections
        want = truth[zs][:, y : y + PATCH[1], x : x + PATCH[0]]
        np.testing.assert_array_equal(item["label"].numpy(), want.astype(np.int64))


def test_zero_boundary_and_mask_at_the_target_size(root: Path) -> None:
    # fine is 32 x 32 x 12 target voxels: a 40 x 40 x 16 patch overhangs on every axis
    ds = BlockDataset(root, "fine", (40, 40, 16), voxel_size=TARGET, return_mask=True, label_layer="truth", samples_per_epoch=2)
    item = ds[0]
    assert item["offset"].tolist() == [0, 0, 0]
    mask = item["mask"].numpy()
    assert mask[:12, :32, :32].all() and mask.sum() == 12 * 32 * 32
    assert not item["image"][0].numpy()[~mask].any() and not item["label"].numpy()[~mask].any()
    assert item["label"].numpy()[mask].min() >= 1


def test_grid_sampler_walks_the_target_grid(root: Path) -> None:
    ds = BlockDataset(root, ["coarse", "fine"], PATCH, voxel_size=TARGET, sampler="grid")
    per = {"coarse": (64, 64, 24), "fine": (32, 32, 12)}  # target voxels; the last box ends at the edge, as in iter_blocks
    want = [(d, box.start) for d, size in per.items() for box in grid_boxes(VoxelBox((0, 0, 0), size), PATCH, (0, 0, 0))]
    assert ("fine", (0, 0, 4)) in want
    assert [(ds[i]["dataset"], tuple(ds[i]["offset"].tolist())) for i in range(len(ds))] == want


def test_transform_gets_the_target_voxel_size(root: Path) -> None:
    sizes: list[tuple[float, float, float]] = []

    def record(block: npt.NDArray[np.float32], voxel_size: tuple[float, float, float]) -> npt.NDArray[np.float32]:
        sizes.append(voxel_size)
        return block

    ds = BlockDataset(root, ["coarse", "fine"], PATCH, voxel_size=TARGET, transform=record, samples_per_epoch=4)
    for i in range(len(ds)):
        ds[i]
    assert sizes == [TARGET] * 4


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"voxel_size": (8, 8)}, "voxel_size must be three numbers"),
        ({"voxel_size": (8, 8, 0)}, "finite and positive"),
        ({"voxel_size": TARGET, "mip": 1}, "give mip or voxel_size, not both"),
        ({"voxel_size": TARGET, "boundary": "error", "sampler": "grid"}, "exceeds dataset 'fine' at [8.0, 8.0, 20.0] nm"),
    ],
)
def test_bad_physical_arguments(root: Path, kw: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        BlockDataset(root, ["coarse", "fine"], (40, 16, 8), **kw)
    assert message in str(info.value)
