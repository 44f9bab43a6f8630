"""The in-process LRU tier: the cache contract, and its byte budget."""

from __future__ import annotations

import numpy as np
import pytest

from blockio.cache.memory import MemoryCache
from tests.blockio.cache.conformance import ChunkCacheContract, chunk, key


class TestMemoryCacheContract(ChunkCacheContract):
    @pytest.fixture
    def cache(self) -> MemoryCache:
        return MemoryCache(1 << 20)


def test_put_many_evicts_the_least_recently_used() -> None:
    one = chunk(0, np.uint8, (1, 10, 10, 10))  # 1000 bytes
    cache = MemoryCache(3500)
    cache.put_many({key(index=(i, 0, 0)): one for i in range(3)})
    cache.get(key(index=(0, 0, 0)))  # now the most recently used
    cache.put_many({key(index=(3, 0, 0)): one, key(index=(4, 0, 0)): one})
    held = cache.get_many([key(index=(i, 0, 0)) for i in range(5)])
    assert sorted(k.index[0] for k in held) == [0, 3, 4]
    stats = cache.stats()
    assert stats["evictions"] == 2 and stats["bytes"] == 3000 and stats["items"] == 3


def test_a_chunk_over_the_budget_is_not_held() -> None:
    cache = MemoryCache(100)
    cache.put_many({key(index=(0, 0, 0)): chunk(0, np.uint8, (1, 5, 5, 5)), key(index=(1, 0, 0)): chunk(1, np.uint8, (1, 2, 2, 2))})
    assert set(cache.get_many([key(index=(0, 0, 0)), key(index=(1, 0, 0))])) == {key(index=(1, 0, 0))}
    assert MemoryCache(0).get_many([key()]) == {}


def test_negative_budget_is_an_error() -> None:
    with pytest.raises(ValueError):
        MemoryCache(-1)
