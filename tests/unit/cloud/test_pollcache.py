"""The bounded poll cache."""

from __future__ import annotations

import pytest

from redstone_cloud.pollcache import BoundedCache


def test_evicts_oldest_and_refreshes_on_put() -> None:
    cache: BoundedCache[str] = BoundedCache(2)
    cache.put(1, "a")
    cache.put(2, "b")
    cache.put(1, "a2")
    cache.put(3, "c")
    assert (cache.get(1), cache.get(2), cache.get(3), len(cache)) == ("a2", None, "c", 2)
    cache.discard(1)
    cache.discard(99)
    assert cache.get(1) is None and len(cache) == 1
    with pytest.raises(ValueError, match="at least one"):
        BoundedCache(0)
