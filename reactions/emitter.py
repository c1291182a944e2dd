"""Coalesced reaction-count frames for hot streams: exactly one emitter per stream, by lease.

Every ASGI node runs this loop (the reactions app adds it to the node, ``realtime.node``, which
starts and stops it). Every ``CHORUS_REACTION_COALESCE_MS``
it reads the hot set and, for each hot stream, tries to take or renew the stream's emitter lease
in Redis (``P:rx:{t}:emit:<stream>``, a value naming the node process, expiring after three
intervals). Only the holder reads the stream's counters (all shards merged) and, if they changed,
publishes one ``reactions`` snapshot with the next version. If the holder dies its lease expires
and another node takes over within three intervals; during a handover two frames may overlap,
which the version number makes harmless: each node forwards only versions newer than the last.
"""

import asyncio
import contextlib
import logging
import uuid

from django.conf import settings
from redis.exceptions import RedisError

from project.redis import stream_tag
from reactions.frames import SNAPSHOT_KIND, counts_frame
from reactions.hot import hot_stream_ids_now
from reactions.redis_counters import (
    VERSION_NEXT_SCRIPT,
    _prefix,
    async_redis_client,
    counter_state_read_async,
    counts_of,
    version_key,
)
from realtime.events import snapshot_broadcast

logger = logging.getLogger(__name__)

LEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def lease_key(stream_id: int) -> str:
    return f"{_prefix()}:{stream_tag(stream_id)}:emit:{stream_id}"


class CountsEmitter:
    def __init__(self) -> None:
        self.token = f"{uuid.uuid4()}"
        self._task: asyncio.Task[None] | None = None
        self._last: dict[int, dict[str, int]] = {}

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="reaction-counts-emitter")

    async def stop(self) -> None:
        """Stop emitting; the leases held expire within three intervals and another node takes over."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        interval = settings.CHORUS_REACTION_COALESCE_MS / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick(lease_ms=int(settings.CHORUS_REACTION_COALESCE_MS * 3))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("reaction emitter: Redis unavailable (%s)", exc)
            except Exception:
                logger.exception("reaction emitter tick failed")

    async def tick(self, *, lease_ms: int) -> None:
        hot = await asyncio.to_thread(hot_stream_ids_now)
        client = async_redis_client()
        for stream_id in sorted(hot):
            if not await client.eval(LEASE_SCRIPT, 1, lease_key(stream_id), self.token, lease_ms):
                self._last.pop(stream_id, None)
                continue
            counts = counts_of(await counter_state_read_async(stream_id=stream_id))
            if counts == self._last.get(stream_id):
                continue
            version = int(await client.eval(VERSION_NEXT_SCRIPT, 1, version_key(stream_id)))
            frame = counts_frame(counts=counts, version=version)
            await asyncio.to_thread(
                snapshot_broadcast, stream_id=stream_id, kind=SNAPSHOT_KIND, frame=frame, version=version
            )
            self._last[stream_id] = counts
        for gone in set(self._last) - hot:
            del self._last[gone]
            with contextlib.suppress(RedisError):
                await client.eval(
                    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
                    1,
                    lease_key(gone),
                    self.token,
                )
