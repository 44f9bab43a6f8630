"""Pyramid planning and averaging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from precomputed.pyramid import downsample_average, downsample_mode, plan_pyramid


def test_anisotropic_plan_goes_2x2x1_then_2x2x2() -> None:
    mips = plan_pyramid((1024, 1024, 128), (8, 8, 40), (64, 64, 64))
    assert [m.factor for m in mips] == [(1, 1, 1), (2, 2, 1), (2, 2, 1), (2, 2, 2), (2, 2, 2)]
    assert [m.voxel_size for m in mips][-1] == (128.0, 128.0, 160.0)
    assert mips[-1].shape == (64, 64, 32)


def test_isotropic_plan_is_2x2x2_until_one_chunk() -> None:
    mips = plan_pyramid((300, 300, 300), (4, 4, 4), (64, 64, 64))
    assert all(m.factor == (2, 2, 2) for m in mips[1:])
    assert mips[-1].shape == (38, 38, 38)
    assert all(a > c for a, c in zip(mips[-2].shape, (64, 64, 64)))


def test_z_finer_than_xy_downsamples_z_first() -> None:
    mips = plan_pyramid((512, 512, 512), (40, 40, 8), (64, 64, 64))
    assert mips[1].factor == (1, 1, 2)


def test_flat_volume_stops_halving_axes_of_one_voxel() -> None:
    mips = plan_pyramid((1000, 1000, 1), (4, 4, 4), (64, 64, 64))
    assert all(m.shape[2] == 1 for m in mips)
    assert mips[-1].shape[0] <= 64


def test_small_volume_has_one_mip() -> None:
    assert len(plan_pyramid((10, 10, 10), (1, 1, 1), (64, 64, 64))) == 1


def test_average_matches_numpy_mean_on_even_shapes() -> None:
    rng = np.random.default_rng(1)
    a = rng.random((2, 8, 12, 16)).astype(np.float32)
    got = downsample_average(a, (2, 2, 1))
    want = a.reshape(2, 8, 6, 2, 8, 2).mean(axis=(3, 5), dtype=np.float64).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_average_odd_edges_average_only_real_voxels() -> None:
    a = np.arange(25, dtype=np.uint8).reshape(1, 1, 5, 5)
    got = downsample_average(a, (2, 2, 1))[0, 0]
    assert got.shape == (3, 3)
    assert got[0, 2] == 7  # last column averages two real voxels: (4 + 9) / 2 = 6.5 -> 7
    assert got[2, 2] == 24  # the corner is a single voxel
    assert got[2, 0] == 21  # (20 + 21) / 2 = 20.5 -> 21


def test_average_integer_rounding_is_half_up_and_keeps_dtype() -> None:
    a = np.array([[[[1, 2], [2, 2]]]], dtype=np.uint16)
    out = downsample_average(a, (2, 2, 1))
    assert out.dtype == np.uint16 and out[0, 0, 0, 0] == 2  # 7/4 = 1.75
    big = np.full((1, 2, 2, 2), 2**32 - 1, dtype=np.uint32)
    assert downsample_average(big, (2, 2, 2))[0, 0, 0, 0] == 2**32 - 1


@settings(max_examples=40, deadline=None)
@given(
    z=st.integers(1, 9), y=st.integers(1, 9), x=st.integers(1, 9),
    factor=st.sampled_from([(2, 2, 1), (2, 2, 2), (1, 1, 2)]),
    split=st.integers(0, 4),
)
def test_blockwise_average_equals_whole(z: int, y: int, x: int, factor: tuple[int, int, int], split: int) -> None:
    """Averaging two aligned halves equals averaging the whole: tasks can split a volume."""
    rng = np.random.default_rng(z * 100 + y * 10 + x)
    a = rng.integers(0, 65535, size=(1, z, y, x), dtype=np.uint16)
    cut = min(2 * split * factor[0], x)
    whole = downsample_average(a, factor)
    if 0 < cut < x:
        left = downsample_average(a[..., :cut], factor)
        right = downsample_average(a[..., cut:], factor)
        np.testing.assert_array_equal(np.concatenate([left, right], axis=-1), whole)


def test_mode_picks_most_frequent_smallest_on_ties_and_ignores_padding() -> None:
    labels = np.array([[[[1, 1, 2], [2, 2, 3], [5, 5, 5]]]], dtype=np.uint32)
    out = downsample_mode(labels, (2, 2, 1))
    np.testing.assert_array_equal(out[0, 0], [[1, 2], [5, 5]])


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_mode_keeps_dtype(dtype: type) -> None:
    labels = np.zeros((1, 2, 4, 4), dtype=dtype)
    labels[0, :, :2, :2] = 7
    out = downsample_mode(labels, (2, 2, 2))
    assert out.dtype == dtype
    assert out[0, 0, 0, 0] == 7 and out[0, 0, 1, 1] == 0


def _brute_mode(a: np.ndarray, factor: tuple[int, int, int]) -> np.ndarray:
    fx, fy, fz = factor
    c, z, y, x = a.shape
    out = np.zeros((c, -(-z // fz), -(-y // fy), -(-x // fx)), a.dtype)
    for ci, k, j, i in np.ndindex(*out.shape):
        window = a[ci, k * fz : (k + 1) * fz, j * fy : (j + 1) * fy, i * fx : (i + 1) * fx].ravel()
        values, counts = np.unique(window, return_counts=True)
        out[ci, k, j, i] = values[np.argmax(counts)]  # first of the most frequent: the smallest
    return out


@settings(max_examples=60, deadline=None)
@given(
    z=st.integers(1, 6), y=st.integers(1, 7), x=st.integers(1, 7), labels=st.integers(1, 5),
    factor=st.sampled_from([(2, 2, 1), (2, 2, 2), (1, 1, 2)]), seed=st.integers(0, 1000),
)
def test_mode_equals_brute_force(z: int, y: int, x: int, labels: int, factor: tuple[int, int, int], seed: int) -> None:
    a = np.random.default_rng(seed).integers(0, labels, size=(1, z, y, x)).astype(np.uint32)
    np.testing.assert_array_equal(downsample_mode(a, factor), _brute_mode(a, factor))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 300), st.integers(1, 300), st.integers(1, 80)),
    chunk=st.sampled_from([(16, 16, 8), (32, 32, 16), (64, 64, 8)]),
    task_kib=st.sampled_from([4, 64, 1024]),
)
def test_pass_boxes_tile_each_mip_once_in_whole_chunks(shape: tuple[int, int, int], chunk: tuple[int, int, int], task_kib: int) -> None:
    from precomputed.geometry import VoxelBox
    from precomputed.tasks import plan_passes

    mips = plan_pyramid(shape, (4.0, 4.0, 40.0), chunk)
    passes = plan_passes(mips, chunk, voxel_bytes=1, task_bytes=task_kib << 10)
    assert [m for p in passes for m in p.write_mips] == list(range(len(mips)))
    for p in passes:
        read = mips[p.read_mip]
        count = np.zeros(read.shape[::-1], np.int64)
        for box in p.boxes:
            assert isinstance(box, VoxelBox)
            count[box.slices_zyx()] += 1
        assert np.all(count == 1)  # the read mip, each voxel in one task
        for level in p.write_mips:
            seen = np.zeros(mips[level].shape[::-1], np.int64)
            for box in p.boxes:
                out = box
                for m in range(p.read_mip + 1, level + 1):
                    out = out.scaled(mips[m].factor, mips[m].shape)
                # written in whole chunks except at the volume's edge, and by one task only
                assert all(a % c == 0 for a, c in zip(out.start, chunk))
                assert all(b % c == 0 or b == n for b, c, n in zip(out.stop, chunk, mips[level].shape))
                seen[out.slices_zyx()] += 1
            assert np.all(seen == 1)
