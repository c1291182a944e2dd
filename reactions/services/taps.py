"""Live taps: validated, rate limited and counted in Redis; never one database row each.

A tap is one Redis pipeline (its keys share the stream's hash slot, so the cold tap's ``MULTI`` also
runs on a Redis Cluster): raise this process's entry of the stream's PN-counter for the kind
(on shard 0, or on a hashed shard when the stream is hot), count it towards the stream's rate and
mark the stream dirty for the flush. On a cold stream the same pipeline (a MULTI, so version and
counts agree) also bumps the snapshot version and reads the counts, which are broadcast at once;
a hot stream's counts are broadcast by its coalescing emitter (``reactions.emitter``) instead.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from project.ratelimit import keys as rate_keys
from project.ratelimit import window_check, window_check_async
from reactions.frames import SNAPSHOT_KIND, counts_frame
from reactions.hot import HotStreams
from reactions.redis_counters import (
    VERSION_NEXT_SCRIPT,
    async_redis_client,
    counts_of,
    dirty_key,
    rate_key,
    redis_client,
    shard_count,
    state_from_hashes,
    tap_count_command,
    taps_key,
    version_key,
)
from realtime.events import snapshot_broadcast, snapshot_broadcast_async
from realtime.node import node

RATE_KEY_TTL = 5


class UnknownKind(ValueError):
    """The reaction kind is not one of ``CHORUS_REACTION_KINDS``."""


class TapLimited(Exception):
    """The user sent more taps than ``CHORUS_REACTION_TAPS_PER_SECOND``."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"too many taps; retry after {retry_after:.2f}s")
        self.retry_after = retry_after


def reaction_kind_check(kind: object) -> str:
    if not isinstance(kind, str) or kind not in settings.CHORUS_REACTION_KINDS:
        raise UnknownKind(f"must be one of: {', '.join(settings.CHORUS_REACTION_KINDS)}")
    return kind


@dataclass(frozen=True)
class TapResult:
    hot: bool
    counts: dict[str, int] | None  # the stream's counts after this tap (cold streams only)


def _shard_for(user_id: int) -> int:
    # Fibonacci hashing spreads consecutive user ids over the shards.
    return ((user_id * 2654435761) & 0xFFFFFFFF) % shard_count()


def _queue_tap(pipe: Any, *, stream_id: int, user_id: int, kind: str, hot: bool) -> None:
    shard = _shard_for(user_id) if hot else 0
    rate = rate_key(stream_id, shard, int(time.time()))
    # EVAL as a raw command: redis-py's cluster pipelines have no eval(), but route EVAL by its keys.
    pipe.execute_command("EVAL", *tap_count_command(stream_id=stream_id, shard=shard, kind=kind))
    pipe.incr(rate)
    pipe.expire(rate, RATE_KEY_TTL)
    pipe.sadd(dirty_key(stream_id), stream_id)
    if not hot:
        pipe.execute_command("EVAL", VERSION_NEXT_SCRIPT, 1, version_key(stream_id))
        for each in range(shard_count()):
            pipe.hgetall(taps_key(stream_id, each))


TAP_COMMANDS = 4  # commands queued before the version and the shard reads


def _counts_after_tap(results: list[Any]) -> tuple[dict[str, int], str, int]:
    """A cold stream's counts after the tap, the snapshot frame to broadcast and its version."""
    version = int(results[TAP_COMMANDS])
    counts = counts_of(state_from_hashes(results[TAP_COMMANDS + 1 :]))
    return counts, counts_frame(counts=counts, version=version), version


def _after_tap(*, stream_id: int, hot: bool, results: list[Any]) -> TapResult:
    if hot:
        return TapResult(hot=True, counts=None)
    counts, frame, version = _counts_after_tap(results)
    snapshot_broadcast(stream_id=stream_id, kind=SNAPSHOT_KIND, frame=frame, version=version)
    return TapResult(hot=False, counts=counts)


def reaction_counts_publish(*, stream_id: int) -> dict[str, int]:
    """Broadcast the stream's counts as Redis holds them now, under a new version (after a repair
    raised them); returns the counts. Version and counts are read in one ``MULTI``, as a tap does."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.execute_command("EVAL", VERSION_NEXT_SCRIPT, 1, version_key(stream_id))
    for each in range(shard_count()):
        pipe.hgetall(taps_key(stream_id, each))
    results = pipe.execute()
    version, counts = int(results[0]), counts_of(state_from_hashes(results[1:]))
    snapshot_broadcast(
        stream_id=stream_id, kind=SNAPSHOT_KIND, frame=counts_frame(counts=counts, version=version), version=version
    )
    return counts


def reaction_tap(*, stream_id: int, user_id: int, kind: str) -> TapResult:
    """Count one live tap; raises ``UnknownKind`` or ``TapLimited`` (nothing counted then).

    Not idempotent by design: every call is one tap. Exactness under retried or duplicated
    flushes comes from the per-replica counters, not from this call.
    """
    reaction_kind_check(kind)
    subject = rate_keys.user_subject(user_id)
    if (wait := window_check(policy="taps", subject=subject, client=redis_client())) is not None:
        raise TapLimited(wait)
    hot_streams = node.part(HotStreams)
    if hot_streams.due():
        hot_streams.refresh()
    hot_streams.note_tap(stream_id)
    hot = hot_streams.is_hot(stream_id)
    pipe = redis_client().pipeline(transaction=not hot)
    _queue_tap(pipe, stream_id=stream_id, user_id=user_id, kind=kind, hot=hot)
    return _after_tap(stream_id=stream_id, hot=hot, results=pipe.execute())


async def reaction_tap_async(*, stream_id: int, user_id: int, kind: str) -> TapResult:
    """``reaction_tap`` for the event loop (WebSocket frames, the HTTP fast lane): the same pipeline and
    broadcast, awaited; only the hot-stream refresh (once a second) leaves the loop."""
    reaction_kind_check(kind)
    subject = rate_keys.user_subject(user_id)
    if (wait := await window_check_async(policy="taps", subject=subject, client=async_redis_client())) is not None:
        raise TapLimited(wait)
    hot_streams = node.part(HotStreams)
    if hot_streams.due():
        await asyncio.to_thread(hot_streams.refresh)
    hot_streams.note_tap(stream_id)
    hot = hot_streams.is_hot(stream_id)
    client = async_redis_client()
    pipe = client.pipeline(transaction=not hot)
    _queue_tap(pipe, stream_id=stream_id, user_id=user_id, kind=kind, hot=hot)
    results = await pipe.execute()
    if hot:
        return TapResult(hot=True, counts=None)
    counts, frame, version = _counts_after_tap(results)
    await snapshot_broadcast_async(client=client, stream_id=stream_id, kind=SNAPSHOT_KIND, frame=frame, version=version)
    return TapResult(hot=False, counts=counts)
