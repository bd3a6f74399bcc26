"""A bounded per-process cache of poll views (vehicle id -> view).

Bounded because a process may see a million vehicles; the oldest entries go
first (insertion order), which for a fleet polling on a fixed period is close
to least-recently-used. A miss only costs one slow-path poll.
"""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("cache needs room for at least one entry")
        self.max_entries = max_entries
        self._entries: dict[int, V] = {}

    def get(self, key: int) -> V | None:
        return self._entries.get(key)

    def put(self, key: int, value: V) -> None:
        self._entries.pop(key, None)
        self._entries[key] = value
        while len(self._entries) > self.max_entries:
            del self._entries[next(iter(self._entries))]

    def discard(self, key: int) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
