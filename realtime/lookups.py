"""Cached, batched lookups for connects and taps: slug -> stream here, token/session -> user in ``auth``.

A node that takes over a dead neighbour's clients answers thousands of these within a second, and
each one used to be a query of its own, queued on one thread. A ``CachedLookup`` keeps positive
answers in process for ``CHORUS_FAST_TAP_CACHE_SECONDS`` (a deleted stream or token, or a
deactivated user, is honoured within that bound) and reads misses in batches: a miss joins the
batch being collected while the previous read runs, so a storm costs one query per batch and a
quiet node one query per miss. Answers of "not found" are not cached.
"""

import asyncio
import itertools
import time
from collections.abc import Callable

from django.conf import settings

from realtime.reads import read_quick
from realtime.selectors import stream_ids_by_slug

CACHE_MAX_ENTRIES = 50_000  # cleared wholesale when full (no LRU needed at this size)
BATCH_MAX = 500  # keys per query


class CachedLookup:
    """``key -> int``: a process-wide cache in front of ``read_many(keys) -> {key: value}``."""

    def __init__(self, read_many: Callable[[list[str]], dict[str, int]]) -> None:
        self._read_many = read_quick(read_many)
        self._entries: dict[str, tuple[int, float]] = {}
        self._waiting: dict[str, asyncio.Future[int | None]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: str) -> int | None:
        """The value of ``key``, or ``None`` if there is none; raises what the read raised (DatabaseError)."""
        entry = self._entries.get(key)
        if entry is not None:
            if entry[1] >= time.monotonic():
                return entry[0]
            del self._entries[key]
        loop = asyncio.get_running_loop()
        if self._reader is not None and self._reader.get_loop() is not loop:
            self._reader, self._waiting = None, {}  # a new event loop (a test's): start afresh
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = loop.create_future()
            if self._reader is None:
                self._reader = loop.create_task(self._read_batches())
        # Shielded: a caller that goes away (its socket closed) must not cancel the others' answer.
        return await asyncio.shield(future)

    def clear(self) -> None:
        self._entries.clear()

    async def _read_batches(self) -> None:
        try:
            while self._waiting:
                batch = dict(itertools.islice(self._waiting.items(), BATCH_MAX))
                for key in batch:
                    del self._waiting[key]
                try:
                    found = await self._read_many(list(batch))
                except Exception as exc:
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    for future in batch.values():
                        future.cancel()
                    raise
                expires = time.monotonic() + settings.CHORUS_FAST_TAP_CACHE_SECONDS
                if len(self._entries) + len(found) > CACHE_MAX_ENTRIES:
                    self._entries.clear()
                for key, future in batch.items():
                    value = found.get(key)
                    if value is not None:
                        self._entries[key] = (value, expires)
                    if not future.done():
                        future.set_result(value)
        finally:
            self._reader = None


stream_ids = CachedLookup(stream_ids_by_slug)
