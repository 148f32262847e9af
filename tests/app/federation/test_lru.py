"""The LRU bound behind the keyring's and discovery's per-server state (issue 21, finding 6)."""

import pytest

from app.federation.lru import LruCache


def test_lru_cache_forgets_least_recently_used_when_full() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.set("a", 1)
    cache.set("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recent
    cache.set("c", 3)
    assert "b" not in cache
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    assert len(cache) == 2
    assert cache.pop("a") == 1
    assert cache.pop("a") is None


def test_lru_cache_stays_bounded_under_many_origins() -> None:
    cache: LruCache[str, int] = LruCache(1000)
    for i in range(120_000):
        cache.set(f"origin{i}.example", i)
    assert len(cache) == 1000


def test_lru_cache_refuses_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        LruCache(0)
