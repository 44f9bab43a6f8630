"""The tiered cache: the cache contract, batched promotion, and the block API's one call per tier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from blockio.cache.memory import ChunkKey, MemoryCache, TieredCache
from tests.blockio.cache.conformance import ChunkCacheContract, chunk, key


class Recording(MemoryCache):
    """A memory tier that records the calls it gets."""

    def __init__(self, max_bytes: int = 1 << 20) -> None:
        super().__init__(max_bytes)
        self.calls: list[tuple[str, int]] = []

    def get(self, key: ChunkKey) -> Any:
        self.calls.append(("get", 1))
        return super().get(key)

    def put(self, key: ChunkKey, chunk: Any) -> None:
        self.calls.append(("put", 1))
        super().put(key, chunk)

    def get_many(self, keys: Sequence[ChunkKey]) -> Any:
        self.calls.append(("get_many", len(keys)))
        return super().get_many(keys)

    def put_many(self, chunks: Mapping[ChunkKey, Any]) -> None:
        self.calls.append(("put_many", len(chunks)))
        super().put_many(chunks)


class Lower(MemoryCache):
    name = "lower"  # stats are reported per tier name


class TestTieredCacheContract(ChunkCacheContract):
    @pytest.fixture
    def cache(self) -> TieredCache:
        return TieredCache([MemoryCache(1 << 20), Lower(1 << 20)])


def test_get_many_fills_upper_tiers_from_lower_ones_in_one_batch() -> None:
    top, middle, bottom = Recording(), Recording(), Recording()
    keys = [key(index=(i, 0, 0)) for i in range(6)]
    middle.put_many({k: chunk(i) for i, k in enumerate(keys[:2])})
    bottom.put_many({k: chunk(i) for i, k in enumerate(keys) if i >= 2 and i != 5})
    for tier in (top, middle, bottom):
        tier.calls.clear()
    cache = TieredCache([top, middle, bottom])

    found = cache.get_many(keys)

    assert set(found) == set(keys[:5])
    assert top.calls == [("get_many", 6), ("put_many", 2), ("put_many", 3)]
    assert middle.calls == [("get_many", 6), ("put_many", 3)]  # each tier asked once, for what the ones above lacked
    assert bottom.calls == [("get_many", 4)]
    # the upper tiers now hold everything that was found
    assert set(top.get_many(keys)) == set(keys[:5]) and set(middle.get_many(keys)) == set(keys[:5])


def test_a_full_hit_in_the_top_tier_asks_no_lower_tier() -> None:
    top, bottom = Recording(), Recording()
    top.put(key(), chunk(0))
    top.calls.clear()
    cache = TieredCache([top, bottom])
    assert set(cache.get_many([key(), key()])) == {key()}
    assert top.calls == [("get_many", 1)] and bottom.calls == []


def test_put_many_is_one_batch_per_tier() -> None:
    top, bottom = Recording(), Recording()
    TieredCache([top, bottom]).put_many({key(index=(i, 0, 0)): chunk(i) for i in range(4)})
    assert top.calls == [("put_many", 4)] and bottom.calls == [("put_many", 4)]


def test_store_reads_a_block_with_one_call_per_tier(tmp_path: Path, root: Path) -> None:
    from blockio.store import Store
    from precomputed.ingest import IngestOptions, ingest

    vol = np.random.default_rng(3).integers(0, 60000, size=(20, 40, 50), dtype=np.uint16)  # [z, y, x]
    np.save(tmp_path / "v.npy", vol)
    ingest(tmp_path / "v.npy", root, "v", IngestOptions(chunk_size=(16, 16, 16), voxel_size=(4, 4, 30), progress=False, workers=1))
    store = Store(root)
    top, bottom = Recording(), Recording()
    store.cache = TieredCache([top, bottom])
    offset, size = (5, 3, 2), (40, 30, 15)  # (x, y, z): 3 x 3 x 2 chunks

    np.testing.assert_array_equal(store.read_block("v", offset, size), vol[2:17, 3:33, 5:45])
    assert top.calls == [("get_many", 18), ("put_many", 18)] and bottom.calls == [("get_many", 18), ("put_many", 18)]

    top.clear()
    top.calls.clear()
    bottom.calls.clear()
    np.testing.assert_array_equal(store.read_block("v", offset, size), vol[2:17, 3:33, 5:45])
    assert top.calls == [("get_many", 18), ("put_many", 18)] and bottom.calls == [("get_many", 18)]  # filled from below
