"""A tiny per-process cache of positive lookups with a time bound (credentials, slugs)."""

import time
from typing import Generic, TypeVar

V = TypeVar("V")

MAX_ENTRIES = 50_000


class TtlCache(Generic[V]):
    """Entries live ``seconds`` (0: nothing is kept); cleared wholesale when full (no LRU needed).

    Safe across threads for what it does: one dict operation at a time under the GIL.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._entries: dict[str, tuple[V, float]] = {}

    def get(self, key: str) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return entry[0]

    def put(self, key: str, value: V) -> None:
        if self.seconds <= 0:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (value, time.monotonic() + self.seconds)

    def discard(self, key: str) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()
