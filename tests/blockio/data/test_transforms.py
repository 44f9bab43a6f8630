"""Tests for blockio.data.transforms: smoothing, resampling, clipping, bad-slice repair."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from blockio.data import transforms
from blockio.data.transforms import (
    BadSlices,
    ClipOutliers,
    Compose,
    GaussianSmooth,
    RepairSlices,
    Resample,
    TransformError,
    clip_outliers,
    find_bad_slices,
    gaussian_smooth,
    interpolate_slices,
    resample,
)


def _variance_along(profile: NDArray[Any]) -> float:
    """Variance of a 1-D distribution given by its weights."""
    weights = profile / profile.sum()
    positions = np.arange(profile.size)
    mean = float((weights * positions).sum())
    return float((weights * (positions - mean) ** 2).sum())


def _ramp(shape_zyx: tuple[int, int, int], slope_xyz: tuple[float, float, float],
          voxel_xyz: tuple[float, float, float]) -> NDArray[np.float64]:
    """A linear function of physical voxel-centre position (nm), [z, y, x]."""
    z, y, x = np.meshgrid(*(np.arange(n) + 0.5 for n in shape_zyx), indexing="ij")
    sx, sy, sz = slope_xyz
    vx, vy, vz = voxel_xyz
    return sx * x * vx + sy * y * vy + sz * z * vz


def test_all_is_sorted_and_complete() -> None:
    assert transforms.__all__ == sorted(transforms.__all__)
    for name in transforms.__all__:
        assert hasattr(transforms, name)


def test_transform_error_is_value_error() -> None:
    assert issubclass(TransformError, ValueError)


# -- gaussian_smooth ----------------------------------------------------------------


def test_smooth_delta_has_per_axis_width_in_voxels() -> None:
    block = np.zeros((21, 41, 41), dtype=np.uint8)  # [z, y, x]
    block[10, 20, 20] = 255
    voxel = (4.0, 8.0, 40.0)  # x, y, z nm: anisotropic
    sigma = (12.0, 16.0, 60.0)  # x, y, z nm -> 3, 2, 1.5 voxels
    out = gaussian_smooth(block, sigma, voxel)
    assert out.dtype == np.float32 and out.shape == block.shape
    assert out.sum() == pytest.approx(255, rel=1e-4)
    for axis, expected in ((2, 3.0), (1, 2.0), (0, 1.5)):
        other = tuple(a for a in range(3) if a != axis)
        assert _variance_along(out.sum(axis=other)) == pytest.approx(expected**2, rel=0.02)
    assert block.max() == 255 and block.sum() == 255  # input untouched


def test_smooth_scalar_sigma_is_smaller_along_z_in_voxels() -> None:
    block = np.zeros((21, 21, 21), dtype=np.float32)
    block[10, 10, 10] = 1
    out = gaussian_smooth(block, 20.0, (5.0, 5.0, 10.0))  # 4, 4, 2 voxels
    assert _variance_along(out.sum(axis=(1, 2))) == pytest.approx(4.0, rel=0.02)
    assert _variance_along(out.sum(axis=(0, 1))) == pytest.approx(16.0, rel=0.03)


def test_smooth_sigma_zero_is_identity() -> None:
    rng = np.random.default_rng(0)
    block = rng.integers(0, 255, (4, 5, 6), dtype=np.uint8)
    out = gaussian_smooth(block, 0, (4, 4, 40))
    np.testing.assert_array_equal(out, block.astype(np.float32))
    assert out.dtype == np.float32


def test_smooth_sigma_zero_on_one_axis_leaves_it_alone() -> None:
    block = np.zeros((5, 9, 9), dtype=np.float32)
    block[:, 4, 4] = np.arange(5)  # varies along z only
    out = gaussian_smooth(block, (8.0, 8.0, 0.0), (4.0, 4.0, 40.0))
    # no mixing across z: each slice keeps its own total
    np.testing.assert_allclose(out.sum(axis=(1, 2)), np.arange(5), rtol=1e-5)


def test_smooth_4d_is_per_channel() -> None:
    block = np.zeros((2, 9, 9, 9), dtype=np.float32)
    block[0, 4, 4, 4] = 1
    out = gaussian_smooth(block, 4.0, (4.0, 4.0, 4.0))
    assert out.shape == block.shape
    assert out[1].max() == 0  # nothing leaked into the other channel
    np.testing.assert_allclose(out[0], gaussian_smooth(block[0], 4.0, (4.0, 4.0, 4.0)))


# -- resample -------------------------------------------------------------------------


def test_resample_shape_follows_xyz_order() -> None:
    block = np.zeros((10, 20, 30), dtype=np.uint8)  # z, y, x
    out = resample(block, (4.0, 8.0, 40.0), (8.0, 8.0, 20.0))  # x halves, y same, z doubles
    assert out.shape == (20, 20, 15)
    assert out.dtype == np.float32
    out = resample(block, (4.0, 4.0, 40.0), (6.0, 6.0, 30.0))  # round(n * voxel / target)
    assert out.shape == (round(10 * 40 / 30), round(20 * 4 / 6), round(30 * 4 / 6))


def test_resample_4d_keeps_channels() -> None:
    block = np.zeros((3, 4, 8, 8), dtype=np.float32)
    assert resample(block, (4, 4, 40), (8, 8, 40)).shape == (3, 4, 4, 4)


@pytest.mark.parametrize(
    ("voxel", "target"),
    [
        ((4.0, 8.0, 40.0), (8.0, 8.0, 20.0)),  # anisotropic: down in x, up in z
        ((8.0, 8.0, 8.0), (4.0, 16.0, 8.0)),
        ((5.0, 5.0, 30.0), (10.0, 10.0, 10.0)),
    ],
)
def test_resample_linear_ramp_stays_at_physical_positions(
    voxel: tuple[float, float, float], target: tuple[float, float, float]
) -> None:
    slope = (1.0, 10.0, 100.0)  # distinct per axis, so a swapped axis shows
    block = _ramp((8, 12, 16), slope, voxel)
    out = resample(block, voxel, target)
    expected = _ramp(out.shape, slope, target)  # type: ignore[arg-type]
    # edges sit within half an input voxel of the border and are clamped there
    interior = tuple(slice(2, n - 2) for n in out.shape)
    np.testing.assert_allclose(out[interior], expected[interior], rtol=1e-5, atol=1e-2)


def test_resample_halving_averages_pairs() -> None:
    block = np.arange(8, dtype=np.float32).reshape(1, 1, 8) * np.ones((2, 2, 1))
    out = resample(block, (4, 4, 40), (8, 4, 40))
    np.testing.assert_allclose(out[0, 0], [0.5, 2.5, 4.5, 6.5])


def test_resample_labels_keep_dtype_and_values() -> None:
    rng = np.random.default_rng(1)
    ids = np.array([0, 7, 2**40 + 3, 2**60 + 1], dtype=np.uint64)
    block = ids[rng.integers(0, 4, (4, 6, 6))]
    for target in ((2.0, 2.0, 10.0), (8.0, 8.0, 40.0), (6.0, 3.0, 20.0)):
        out = resample(block, (4.0, 4.0, 20.0), target, labels=True)
        assert out.dtype == np.uint64
        assert set(np.unique(out)) <= set(np.unique(block))
    up = resample(block, (4.0, 4.0, 20.0), (2.0, 2.0, 10.0), labels=True)
    np.testing.assert_array_equal(up[::2, ::2, ::2], block)  # exact, even for 64-bit IDs
    assert block.dtype == np.uint64  # input untouched


def test_resample_identity() -> None:
    block = np.random.default_rng(2).random((3, 4, 5))
    np.testing.assert_allclose(resample(block, (4, 4, 40), (4, 4, 40)), block, rtol=1e-6)


# -- clip_outliers ------------------------------------------------------------------


def test_clip_outliers() -> None:
    block = np.array([0, 5, 10, 250, 255], dtype=np.uint8).reshape(1, 1, 5)
    out = clip_outliers(block, 5, 250)
    np.testing.assert_array_equal(out.ravel(), [5, 5, 10, 250, 250])
    assert out.dtype == np.float32
    assert block.ravel()[0] == 0


# -- find_bad_slices ------------------------------------------------------------------


def _noise(shape: tuple[int, ...], seed: int = 0) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(10, 200, shape, dtype=np.uint8)


def test_no_bad_slices() -> None:
    bad = find_bad_slices(_noise((6, 8, 8)))
    assert bad == BadSlices((), ()) and bad.all == ()


def test_blank_slices() -> None:
    block = _noise((6, 8, 8))
    block[1] = 0
    block[4] = 77  # constant, not zero
    bad = find_bad_slices(block)
    assert bad.blank == (1, 4) and bad.saturated == ()


def test_blank_std_threshold() -> None:
    block = _noise((4, 8, 8)).astype(np.float32)
    block[2] = 5 + 1e-3 * np.random.default_rng(3).standard_normal((8, 8))
    assert find_bad_slices(block).blank == ()
    assert find_bad_slices(block, blank_std=0.01).blank == (2,)


def test_saturated_slices_with_dtype_max() -> None:
    block = _noise((6, 8, 8))
    block[3, :5] = 255  # 5/8 of the slice
    block[5, :2] = 255  # 1/4: not saturated
    assert find_bad_slices(block, dtype_max=255).saturated == (3,)
    assert find_bad_slices(block, dtype_max=255, saturated_fraction=0.25).saturated == (3, 5)


def test_saturated_value_wins_over_dtype_max() -> None:
    block = _noise((4, 8, 8))
    block[0, :6] = 200
    assert find_bad_slices(block, saturated_value=200, dtype_max=255).saturated == (0,)
    assert find_bad_slices(block, dtype_max=255).saturated == ()


def test_saturated_defaults_to_block_max() -> None:
    block = _noise((4, 8, 8))
    block[2, :6] = 230  # above the noise
    assert find_bad_slices(block).saturated == (2,)


def test_constant_block_is_blank_not_saturated() -> None:
    bad = find_bad_slices(np.zeros((3, 4, 4), dtype=np.uint8))
    assert bad.blank == (0, 1, 2) and bad.saturated == ()


def test_mixed_bad_slices() -> None:
    block = _noise((8, 8, 8))
    block[0] = 0
    block[5, :6] = 255
    block[6] = 255  # blank and saturated
    bad = find_bad_slices(block, dtype_max=255)
    assert bad.blank == (0, 6)
    assert bad.saturated == (5, 6)
    assert bad.all == (0, 5, 6)


def test_multichannel_slice_bad_in_any_channel() -> None:
    block = _noise((2, 6, 8, 8))
    block[0, 1] = 0
    block[1, 4, :7] = 255
    bad = find_bad_slices(block, dtype_max=255)
    assert bad.blank == (1,) and bad.saturated == (4,)
    assert bad.all == (1, 4)


def test_bad_slices_is_frozen() -> None:
    bad = BadSlices((1,), ())
    with pytest.raises(AttributeError):
        bad.blank = ()  # type: ignore[misc]


# -- interpolate_slices ----------------------------------------------------------------


def test_interpolate_linear_between_neighbours() -> None:
    block = np.stack([np.full((2, 3), v, dtype=np.float32) for v in (0, 9, 9, 9, 40)])
    out = interpolate_slices(block, [1, 2, 3])  # between slice 0 (0) and 4 (40)
    np.testing.assert_allclose(out[:, 0, 0], [0, 10, 20, 30, 40])
    assert block[1, 0, 0] == 9  # input untouched


def test_interpolate_edges_copy_nearest_good() -> None:
    block = np.arange(6, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), dtype=np.uint8)
    out = interpolate_slices(block, [0, 1, 5])
    np.testing.assert_array_equal(out[:, 0, 0], [2, 2, 2, 3, 4, 4])
    assert out.dtype == np.float32


def test_interpolate_4d_per_channel() -> None:
    block = np.zeros((2, 3, 2, 2), dtype=np.float32)
    block[0, 0], block[0, 2] = 1, 3
    block[1, 0], block[1, 2] = 10, 30
    out = interpolate_slices(block, (1,))
    np.testing.assert_allclose(out[:, 1, 0, 0], [2, 20])


def test_interpolate_nothing_bad_is_a_copy() -> None:
    block = _noise((3, 4, 4))
    out = interpolate_slices(block, [])
    np.testing.assert_array_equal(out, block)
    assert out.dtype == np.float32


def test_interpolate_all_bad_raises() -> None:
    with pytest.raises(TransformError, match="all 3 z slices are bad"):
        interpolate_slices(np.zeros((3, 2, 2)), [0, 1, 2])


@pytest.mark.parametrize("bad", [[3], [-1], [0.5], [True]])
def test_interpolate_bad_index_raises(bad: list[Any]) -> None:
    with pytest.raises(TransformError):
        interpolate_slices(np.zeros((3, 2, 2)), bad)


@settings(max_examples=60, deadline=None)
@given(
    depth=st.integers(1, 8),
    channels=st.sampled_from([None, 1, 2]),
    data=st.data(),
)
def test_interpolate_leaves_good_slices_unchanged(
    depth: int, channels: int | None, data: st.DataObject
) -> None:
    bad = data.draw(st.lists(st.integers(0, depth - 1), max_size=depth - 1))
    shape = (depth, 3, 2) if channels is None else (channels, depth, 3, 2)
    seed = data.draw(st.integers(0, 2**32 - 1))
    block = np.random.default_rng(seed).integers(0, 1000, shape).astype(np.float32)
    if len(set(bad)) == depth:
        return
    out = interpolate_slices(block, bad)
    good = [z for z in range(depth) if z not in set(bad)]
    np.testing.assert_array_equal(out[..., good, :, :], block[..., good, :, :])
    # repaired values lie within the range of the good data they came from
    if bad:
        repaired = out[..., sorted(set(bad)), :, :]
        goods = block[..., good, :, :]
        assert repaired.min() >= goods.min() and repaired.max() <= goods.max()


# -- composable callables -----------------------------------------------------------


def test_compose_passes_updated_voxel_size() -> None:
    seen: list[tuple[float, float, float]] = []

    def record(block: NDArray[Any], voxel_size: tuple[float, float, float]) -> NDArray[Any]:
        seen.append(voxel_size)
        return block

    pipeline = Compose([record, Resample((8.0, 8.0, 40.0)), record, GaussianSmooth(8.0), record])
    out = pipeline(np.zeros((4, 16, 16), dtype=np.uint8), (4.0, 4.0, 40.0))
    assert seen == [(4.0, 4.0, 40.0), (8.0, 8.0, 40.0), (8.0, 8.0, 40.0)]
    assert out.shape == (4, 8, 8)
    assert pipeline.output_voxel_size((4.0, 4.0, 40.0)) == (8.0, 8.0, 40.0)


def test_compose_smoothing_uses_resampled_voxel_size() -> None:
    block = np.zeros((21, 21, 42), dtype=np.float32)
    block[10, 10, 20:22] = 1
    # after resampling x to 8 nm, 16 nm sigma is 2 voxels along x
    pipeline = Compose([Resample((8.0, 4.0, 4.0)), GaussianSmooth((16.0, 0.0, 0.0))])
    out = pipeline(block, (4.0, 4.0, 4.0))
    assert _variance_along(out.sum(axis=(0, 1))) == pytest.approx(4.0, rel=0.02)


def test_transforms_match_functions() -> None:
    block = _noise((5, 6, 6))
    block[2] = 0
    voxel = (4.0, 4.0, 40.0)
    np.testing.assert_array_equal(ClipOutliers(20, 180)(block, voxel), clip_outliers(block, 20, 180))
    np.testing.assert_array_equal(
        GaussianSmooth((8.0, 8.0, 40.0))(block, voxel),
        gaussian_smooth(block, (8.0, 8.0, 40.0), voxel),
    )
    repaired = RepairSlices()(block, voxel)
    np.testing.assert_allclose(repaired[2], (block[1].astype(np.float32) + block[3]) / 2)
    labels = Resample((8.0, 8.0, 40.0), labels=True)(block, voxel)
    assert labels.dtype == np.uint8
    assert ClipOutliers(0, 1).output_voxel_size(voxel) == voxel


def test_compose_is_nestable_and_frozen() -> None:
    inner = Compose([Resample((8.0, 8.0, 40.0))])
    outer = Compose([inner, ClipOutliers(0, 1)])
    assert outer.output_voxel_size((4, 4, 40)) == (8.0, 8.0, 40.0)
    assert isinstance(outer.transforms, tuple)
    with pytest.raises(AttributeError):
        outer.transforms = ()  # type: ignore[misc]
    with pytest.raises(TransformError):
        Compose([42])  # type: ignore[list-item]


# -- invalid arguments ------------------------------------------------------------------

BLOCK = np.zeros((2, 3, 4), dtype=np.float32)


@pytest.mark.parametrize(
    "call",
    [
        lambda: gaussian_smooth(BLOCK, -1.0, (4, 4, 40)),
        lambda: gaussian_smooth(BLOCK, (1.0, -1.0, 0.0), (4, 4, 40)),
        lambda: gaussian_smooth(BLOCK, (1.0, 1.0), (4, 4, 40)),  # type: ignore[arg-type]
        lambda: gaussian_smooth(BLOCK, float("nan"), (4, 4, 40)),
        lambda: gaussian_smooth(BLOCK, 1.0, (4, 40)),  # type: ignore[arg-type]
        lambda: gaussian_smooth(BLOCK, 1.0, (4, 4, 4, 40)),  # type: ignore[arg-type]
        lambda: gaussian_smooth(BLOCK, 1.0, (4, 0, 40)),
        lambda: gaussian_smooth(BLOCK, 1.0, (4, -4, 40)),
        lambda: gaussian_smooth(BLOCK, 1.0, "xyz"),  # type: ignore[arg-type]
        lambda: gaussian_smooth(np.zeros((3, 4)), 1.0, (4, 4, 40)),
        lambda: gaussian_smooth(np.zeros((1, 1, 2, 3, 4)), 1.0, (4, 4, 40)),
        lambda: gaussian_smooth(np.zeros((2, 2, 2), dtype=complex), 1.0, (4, 4, 40)),
        lambda: resample(BLOCK, (4, 4), (4, 4, 40)),  # type: ignore[arg-type]
        lambda: resample(BLOCK, (4, 4, 40), (4, 0, 40)),
        lambda: resample(BLOCK, (4, 4, 40), (4, 4, float("inf"))),
        lambda: resample(BLOCK, (4, 4, 40), (8, 8, 40), order=6),
        lambda: resample(np.zeros(5), (4, 4, 40), (8, 8, 40)),
        lambda: clip_outliers(BLOCK, 5, 5),
        lambda: clip_outliers(BLOCK, 6, 5),
        lambda: clip_outliers(BLOCK, float("nan"), 5),
        lambda: clip_outliers(np.zeros((2, 2)), 0, 1),
        lambda: find_bad_slices(np.zeros((2, 2))),
        lambda: find_bad_slices(BLOCK, blank_std=-1),
        lambda: find_bad_slices(BLOCK, saturated_fraction=0),
        lambda: find_bad_slices(BLOCK, saturated_fraction=1.5),
        lambda: interpolate_slices(np.zeros((2, 2)), [0]),
        lambda: GaussianSmooth(-1.0),
        lambda: Resample((4, 4)),  # type: ignore[arg-type]
        lambda: Resample((4, 4, -40)),
        lambda: Resample((4, 4, 40), order=-1),
        lambda: ClipOutliers(1, 0),
        lambda: RepairSlices(saturated_fraction=2),
        lambda: Compose([ClipOutliers(0, 1)])(BLOCK, (4, 4)),  # type: ignore[arg-type]
    ],
)
def test_bad_arguments_raise_transform_error(call: Any) -> None:
    with pytest.raises(TransformError) as info:
        call()
    assert "\n" not in str(info.value)
