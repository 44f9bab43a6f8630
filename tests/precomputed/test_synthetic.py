"""Tests of the synthetic EM volume and its TIFF stack writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from scipy.spatial import cKDTree

from precomputed import synthetic_cells
from precomputed.synthetic import SyntheticVolume, make_em_volume, write_tiff_stack

SHAPE = (64, 48, 16)  # (x, y, z)
VOXEL = (8.0, 8.0, 40.0)  # (x, y, z) nm
CELL_NM = 300.0


@pytest.fixture(scope="module")
def volume() -> SyntheticVolume:
    return make_em_volume(SHAPE, voxel_size=VOXEL, cell_size_nm=CELL_NM, seed=3)


def test_shapes_and_dtypes_are_zyx(volume: SyntheticVolume) -> None:
    assert volume.image.shape == (16, 48, 64)
    assert volume.labels.shape == (16, 48, 64)
    assert volume.image.dtype == np.uint8
    assert volume.labels.dtype == np.uint32
    assert volume.image.flags.c_contiguous and volume.labels.flags.c_contiguous
    assert volume.voxel_size == VOXEL
    assert volume.shape == SHAPE


def test_same_seed_same_volume(volume: SyntheticVolume) -> None:
    again = make_em_volume(SHAPE, voxel_size=VOXEL, cell_size_nm=CELL_NM, seed=3)
    np.testing.assert_array_equal(again.image, volume.image)
    np.testing.assert_array_equal(again.labels, volume.labels)


def test_other_seed_other_volume(volume: SyntheticVolume) -> None:
    other = make_em_volume(SHAPE, voxel_size=VOXEL, cell_size_nm=CELL_NM, seed=4)
    assert not np.array_equal(other.image, volume.image)
    assert not np.array_equal(other.labels, volume.labels)


def test_labels_are_consecutive_from_one(volume: SyntheticVolume) -> None:
    ids = np.unique(volume.labels)
    assert ids[0] == 0
    np.testing.assert_array_equal(ids[1:], np.arange(1, len(ids)))
    assert len(ids) > 5


def test_membranes_are_dark_and_thin(volume: SyntheticVolume) -> None:
    membrane = volume.labels == 0
    assert 0.03 < membrane.mean() < 0.35
    inside = volume.image[~membrane].astype(float)
    assert volume.image[membrane].mean() < inside.mean() - 40
    assert np.median(volume.image[membrane]) < np.percentile(inside, 5)


def test_cells_never_touch(volume: SyntheticVolume) -> None:
    # Along every axis, two neighbouring voxels of different cells have a membrane between.
    labels = volume.labels
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        pairs = (a[1:] != a[:-1]) & (a[1:] > 0) & (a[:-1] > 0)
        assert not pairs.any(), f"cells touch along axis {axis} of [z, y, x]"


def test_histogram_is_not_saturated(volume: SyntheticVolume) -> None:
    image = volume.image
    assert (image == 0).mean() < 0.01
    assert (image == 255).mean() < 0.01
    assert 20 < np.percentile(image, 1) and np.percentile(image, 99) < 250
    assert image.std() > 15


def test_cells_have_texture(volume: SyntheticVolume) -> None:
    cell = np.bincount(volume.labels.ravel())[1:].argmax() + 1
    assert volume.image[volume.labels == cell].std() > 3


def test_sections_differ_in_brightness() -> None:
    vol = make_em_volume((32, 32, 64), voxel_size=VOXEL, cell_size_nm=2000.0, seed=1)
    means = vol.image.reshape(64, -1).mean(axis=1)
    assert means.std() > 1.0


def test_cells_are_round_in_physical_space() -> None:
    # 8 x 8 x 40 nm voxels: a round cell spans 5x more voxels along x than along z.
    vol = make_em_volume((160, 160, 40), voxel_size=VOXEL, cell_size_nm=400.0, seed=2)
    ratios = []
    for box in ndimage.find_objects(vol.labels):
        if any(b.start == 0 or b.stop == n for b, n in zip(box, vol.labels.shape)):
            continue  # cut by the volume's faces
        extent_z = (box[0].stop - box[0].start) * VOXEL[2]
        extent_x = (box[2].stop - box[2].start) * VOXEL[0]
        ratios.append(extent_x / extent_z)
    assert len(ratios) >= 3
    assert 0.5 < np.median(ratios) < 2.0


def test_fast_path_matches_plain_queries() -> None:
    # The block pre-query must give what asking the tree for every voxel gives.
    rng = np.random.default_rng(0)
    extent = np.array([96 * 8.0, 80 * 8.0, 12 * 40.0])
    seeds = synthetic_cells.jittered_grid(extent, 300.0, rng)
    tree = cKDTree(seeds)
    near, membrane, inside = synthetic_cells.slab_cells(tree, seeds, (96, 80), (2, 12), VOXEL)

    z, y, x = np.meshgrid(np.arange(2, 12), np.arange(80), np.arange(96), indexing="ij")
    points = np.stack([(x.ravel() + 0.5) * 8, (y.ravel() + 0.5) * 8, (z.ravel() + 0.5) * 40], 1)
    distance, index = tree.query(points, k=2)
    normal = seeds[index[:, 1]] - seeds[index[:, 0]]
    gap = np.linalg.norm(normal, axis=1)
    facet = (distance[:, 1] ** 2 - distance[:, 0] ** 2) / (2 * gap)
    width = synthetic_cells.membrane_width(normal / gap[:, None], VOXEL)
    np.testing.assert_array_equal(near.ravel(), index[:, 0])
    np.testing.assert_allclose(membrane.ravel(), np.exp(-0.5 * (facet / width) ** 2), atol=1e-3)
    changed = inside.ravel() != (facet >= synthetic_cells.HALF_DEPTH * width)
    assert changed.sum() <= 2  # float32 rounding exactly at the threshold


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (0, 8, 8)}, "shape x"),
        ({"shape": (8, -1, 8)}, "shape y"),
        ({"shape": (8, 8, 2.5)}, "shape z"),
        ({"shape": (8, 8)}, "three sizes"),
        ({"shape": "888"}, "three sizes"),
        ({"voxel_size": (8.0, 0.0, 40.0)}, "not three positive numbers"),
        ({"voxel_size": (8.0, 8.0, float("nan"))}, "not three positive numbers"),
        ({"voxel_size": (8.0, 8.0)}, "not three positive numbers"),
        ({"cell_size_nm": -5.0}, "cell_size_nm"),
        ({"cell_size_nm": 50.0}, "two voxels"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_invalid_arguments(kwargs: dict, match: str) -> None:
    args = {"shape": (16, 16, 4), "voxel_size": VOXEL, "cell_size_nm": CELL_NM, "seed": 0}
    args.update(kwargs)
    shape = args.pop("shape")
    with pytest.raises(ValueError, match=match):
        make_em_volume(shape, **args)


def test_tiff_stack_round_trip(tmp_path: Path, volume: SyntheticVolume) -> None:
    folder = tmp_path / "stack"
    paths = write_tiff_stack(folder, volume.image, volume.voxel_size)
    assert [p.name for p in paths] == [f"z{z:04d}.tif" for z in range(16)]
    assert sorted(folder.iterdir()) == paths
    for z, path in enumerate(paths):
        np.testing.assert_array_equal(tifffile.imread(path), volume.image[z])


def test_tiff_stack_carries_voxel_size(tmp_path: Path) -> None:
    image = np.arange(3 * 5 * 7, dtype=np.uint16).reshape(3, 5, 7)
    paths = write_tiff_stack(tmp_path, image, (4.0, 5.0, 30.0))
    with tifffile.TiffFile(paths[1]) as tif:
        assert tif.is_imagej
        assert tif.imagej_metadata["unit"] == "um"
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.030)
        tags = tif.pages[0].tags
        x_num, x_den = tags["XResolution"].value
        y_num, y_den = tags["YResolution"].value
        np.testing.assert_array_equal(tif.asarray(), image[1])
    assert 1000.0 * x_den / x_num == pytest.approx(4.0)  # pixels per um -> nm per pixel
    assert 1000.0 * y_den / y_num == pytest.approx(5.0)


def test_tiff_stack_refuses_a_folder_with_tiffs(tmp_path: Path) -> None:
    (tmp_path / "old.TIF").write_bytes(b"")
    with pytest.raises(FileExistsError, match="old.TIF"):
        write_tiff_stack(tmp_path, np.zeros((2, 4, 4), np.uint8), VOXEL)


def test_tiff_stack_writes_into_a_folder_without_tiffs(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("kept")
    paths = write_tiff_stack(tmp_path / ".", np.zeros((2, 4, 4), np.uint8), VOXEL)
    assert len(paths) == 2 and (tmp_path / "notes.txt").read_text() == "kept"


@pytest.mark.parametrize(
    ("image", "voxel_size", "match"),
    [
        (np.zeros((4, 4), np.uint8), VOXEL, "3-D"),
        (np.zeros((2, 4, 4), np.float32), VOXEL, "uint8 or uint16"),
        (np.zeros((2, 4, 4), np.uint8), (8.0, -8.0, 40.0), "not three positive numbers"),
    ],
)
def test_tiff_stack_invalid_arguments(
    tmp_path: Path, image: np.ndarray, voxel_size: tuple[float, float, float], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        write_tiff_stack(tmp_path, image, voxel_size)
    assert not list(tmp_path.iterdir())
