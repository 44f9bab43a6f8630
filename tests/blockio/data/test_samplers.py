"""The samplers without torch: grid order as Store.iter_blocks, weights, the random draw."""

from __future__ import annotations

import numpy as np
import pytest

from blockio.boxes import VoxelBox, grid_boxes
from blockio.data.samplers import Volume, cumulative_weights, grid_item, random_offset, random_volume
from blockio.errors import InvalidRequest


def _volume(name: str, bounds: VoxelBox, patch: tuple[int, int, int] = (8, 6, 4), overlap: tuple[int, int, int] = (2, 0, 1)) -> Volume:
    return Volume.of(name, bounds, (8.0, 8.0, 40.0), patch, overlap)


@pytest.mark.parametrize("bounds", [VoxelBox((0, 0, 0), (30, 20, 9)), VoxelBox((3, 5, 0), (9, 11, 4)), VoxelBox((0, 0, 0), (5, 50, 3))])
def test_grid_offsets_are_the_boxes_of_iter_blocks_in_order(bounds: VoxelBox) -> None:
    volume = _volume("a", bounds)
    expected = [b.start for b in grid_boxes(bounds, (8, 6, 4), (2, 0, 1))]
    assert [volume.grid_offset(j) for j in range(volume.grid_count)] == expected


def test_grid_items_run_through_the_volumes_in_turn() -> None:
    a, b = _volume("a", VoxelBox((0, 0, 0), (20, 6, 4))), _volume("b", VoxelBox((0, 0, 0), (8, 12, 4)))
    ends = np.cumsum([a.grid_count, b.grid_count])
    items = [grid_item((a, b), ends, i) for i in range(int(ends[-1]))]
    assert [(v.id, o) for v, o in items] == [("a", (0, 0, 0)), ("a", (6, 0, 0)), ("a", (12, 0, 0)), ("b", (0, 0, 0)), ("b", (0, 6, 0))]


def test_weights() -> None:
    small, big = _volume("s", VoxelBox((0, 0, 0), (10, 10, 1))), _volume("b", VoxelBox((0, 0, 0), (10, 10, 3)))
    np.testing.assert_allclose(cumulative_weights((small, big), "size"), [0.25, 1.0])
    np.testing.assert_allclose(cumulative_weights((small, big), "equal"), [0.5, 1.0])
    np.testing.assert_allclose(cumulative_weights((small, big), [0, 2]), [0.0, 1.0])
    with pytest.raises(InvalidRequest, match="one number per dataset"):
        cumulative_weights((small, big), [None, 1])  # type: ignore[list-item]


def test_random_draw_is_a_pure_function_of_the_generator_and_stays_inside() -> None:
    volumes = (_volume("a", VoxelBox((4, 0, 2), (40, 30, 12))), _volume("b", VoxelBox((0, 0, 0), (5, 30, 12))))
    cumulative = cumulative_weights(volumes, "equal")
    draws = []
    for i in range(200):
        rng = np.random.default_rng([7, 0, i])
        volume = random_volume(rng, volumes, cumulative)
        offset = random_offset(rng, volume, (8, 6, 4))
        again = np.random.default_rng([7, 0, i])
        assert random_volume(again, volumes, cumulative) is volume and random_offset(again, volume, (8, 6, 4)) == offset
        box = VoxelBox.from_offset_size(offset, (8, 6, 4))
        # the patch fits where it can; where the volume is thinner than the patch it starts at the volume's start
        if volume.id == "a":
            assert volume.bounds.contains(box)
        else:
            assert offset[0] == 0 and 0 <= offset[1] <= 24
        draws.append(volume.id)
    assert 60 < draws.count("a") < 140
