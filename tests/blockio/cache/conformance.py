"""What every chunk-cache tier promises, as a base class each tier's tests subclass.

A subclass provides a ``cache`` fixture returning an empty tier; the tests
here use only the :class:`blockio.cache.ChunkCache` interface (plus
``invalidate``, which every tier has).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from blockio.cache.memory import ChunkKey


def key(dataset: str = "d", layer: str = "image", index: tuple[int, int, int] = (0, 0, 0), version: str = "v1") -> ChunkKey:
    return ChunkKey(dataset, layer, version, "precomputed", 0, index)


def chunk(seed: int, dtype: Any = np.uint16, shape: tuple[int, ...] = (1, 4, 5, 6)) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) * 7 + seed).astype(dtype).reshape(shape)


class ChunkCacheContract:
    """The conformance tests; not collected itself (its name does not start with ``Test``)."""

    @pytest.fixture
    def cache(self) -> Any:
        raise NotImplementedError("a subclass provides an empty cache tier")

    def test_miss_then_hit(self, cache: Any) -> None:
        assert cache.get(key()) is None
        cache.put(key(), chunk(1))
        got = cache.get(key())
        assert got is not None and got.dtype == np.uint16
        np.testing.assert_array_equal(got, chunk(1))

    def test_values_are_read_only_copies(self, cache: Any) -> None:
        mine = chunk(2)
        cache.put(key(), mine)
        mine[...] = 0  # the caller's array changing later changes nothing cached
        got = cache.get(key())
        assert got is not None and not got.flags.writeable and got.flags.c_contiguous
        np.testing.assert_array_equal(got, chunk(2))

    def test_put_replaces(self, cache: Any) -> None:
        cache.put(key(), chunk(1))
        cache.put(key(), chunk(5, np.float32, (2, 2, 2, 2)))
        got = cache.get(key())
        assert got is not None and got.dtype == np.float32 and got.shape == (2, 2, 2, 2)

    def test_keys_differ_by_every_field(self, cache: Any) -> None:
        variants = [key(), key(dataset="e"), key(layer="pred"), key(version="v2"), key(index=(0, 0, 1)), ChunkKey("d", "image", "v1", "zarr", 0, (0, 0, 0)), ChunkKey("d", "image", "v1", "precomputed", 1, (0, 0, 0))]
        for i, k in enumerate(variants):
            cache.put(k, chunk(i))
        for i, k in enumerate(variants):
            np.testing.assert_array_equal(cache.get(k), chunk(i))

    def test_get_many_returns_the_hits_only(self, cache: Any) -> None:
        held = {key(index=(i, 0, 0)): chunk(i) for i in range(0, 6, 2)}
        for k, c in held.items():
            cache.put(k, c)
        asked = [key(index=(i, 0, 0)) for i in range(6)]
        found = cache.get_many(asked)
        assert set(found) == set(held)
        for k, c in held.items():
            np.testing.assert_array_equal(found[k], c)
            assert not found[k].flags.writeable
        assert cache.get_many([]) == {}

    def test_put_many_then_get_many_round_trip(self, cache: Any) -> None:
        chunks = {
            key(index=(0, 0, 0)): chunk(0, np.uint8),
            key(index=(1, 0, 0)): chunk(1, np.int32, (2, 3, 3, 3)),
            key(index=(2, 0, 0)): chunk(2, np.float64, (1, 1, 2, 2)),
            key(index=(3, 0, 0)): np.asfortranarray(chunk(3, np.uint64, (1, 3, 4, 5))),
        }
        cache.put_many(chunks)
        found = cache.get_many(list(chunks))
        assert set(found) == set(chunks)
        for k, c in chunks.items():
            assert found[k].dtype == c.dtype and found[k].shape == c.shape
            np.testing.assert_array_equal(found[k], c)
            np.testing.assert_array_equal(cache.get(k), c)  # one at a time sees the same values
        cache.put_many({})

    def test_put_many_and_put_agree(self, cache: Any) -> None:
        cache.put(key(index=(0, 0, 0)), chunk(0))
        cache.put_many({key(index=(0, 0, 0)): chunk(9), key(index=(1, 0, 0)): chunk(8)})
        np.testing.assert_array_equal(cache.get(key(index=(0, 0, 0))), chunk(9))
        np.testing.assert_array_equal(cache.get_many([key(index=(1, 0, 0))])[key(index=(1, 0, 0))], chunk(8))

    def test_invalidate_drops_a_dataset_or_one_layer(self, cache: Any) -> None:
        cache.put_many({key("a", "image"): chunk(0), key("a", "pred"): chunk(1), key("ab", "image"): chunk(2)})
        cache.invalidate("a", "pred")
        assert cache.get(key("a", "pred")) is None and cache.get(key("a", "image")) is not None
        cache.invalidate("a")
        assert cache.get(key("a", "image")) is None and cache.get(key("ab", "image")) is not None

    def test_stats_count_each_key(self, cache: Any) -> None:
        cache.put_many({key(index=(i, 0, 0)): chunk(i) for i in range(3)})
        cache.get_many([key(index=(i, 0, 0)) for i in range(5)])
        assert cache.get(key(index=(9, 0, 0))) is None
        stats = _flat(cache.stats())
        assert (stats["hits"], stats["misses"]) == (3, 3)


def _flat(stats: dict[str, Any]) -> dict[str, Any]:
    """A tiered cache reports per tier: its first tier's counters."""
    first = next(iter(stats.values()))
    return first if isinstance(first, dict) else stats
