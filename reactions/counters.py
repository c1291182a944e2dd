"""Tap counters in Redis: the live copy of each stream's per-kind PN-counters.

Layout (``P`` is ``CHORUS_REDIS_PREFIX``):

- ``P:rx:taps:<stream>:<shard>`` hash, field ``<kind>|<replica>`` -> taps counted by that replica.
  A cold stream uses shard 0 only; a hot one spreads its taps over ``CHORUS_HOT_STREAM_SHARDS``
  keys by hashing the user id, so no single key takes the whole stream's write load. The CRDT
  replica of an entry is ``<replica>#<shard>``: each (process, shard) pair only ever grows its
  own entry, which is what makes the per-replica-max merge exact.
- ``P:rx:rate:<stream>:<shard>:<second>``: taps per second (expires), the input of hot detection.
- ``P:rx:dirty`` set of stream ids with taps not yet flushed to PostgreSQL.
- ``P:rx:ver:<stream>``: version of the stream's last count snapshot frame. It starts from the Redis
  server's clock in microseconds (``VERSION_NEXT_SCRIPT``), so versions keep rising when Redis
  loses the key (a restart without persistence) instead of starting again at 1.
"""

import os
import socket
from collections import defaultdict
from functools import lru_cache

import redis
import redis.asyncio as aioredis
from django.conf import settings

from reactions.crdt import PNCounter


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    # redis-py pools reset themselves after fork, so one client per process is safe in Celery.
    return redis.Redis.from_url(settings.CHORUS_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


_async_clients: dict[int, aioredis.Redis] = {}


def async_redis_client() -> aioredis.Redis:
    """One asyncio client per event loop (an asyncio pool must not cross loops)."""
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = aioredis.Redis.from_url(settings.CHORUS_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        _async_clients[loop_id] = client
    return client


def replica_id() -> str:
    """This process's replica name: configured, or ``<host>:<pid>`` (checked per call: Celery forks)."""
    return settings.CHORUS_REACTION_REPLICA_ID or f"{socket.gethostname()}:{os.getpid()}"


def _prefix() -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:rx"


def taps_key(stream_id: int, shard: int) -> str:
    return f"{_prefix()}:taps:{stream_id}:{shard}"


def rate_key(stream_id: int, shard: int, second: int) -> str:
    return f"{_prefix()}:rate:{stream_id}:{shard}:{second}"


def dirty_key() -> str:
    return f"{_prefix()}:dirty"


def version_key(stream_id: int) -> str:
    return f"{_prefix()}:ver:{stream_id}"


# The next snapshot version of a stream. A missing counter (a new stream, or a Redis that lost its
# data) starts from the server clock in microseconds: later than every version handed out before,
# unless a stream had more than a million frames a second. Built from TIME's two strings, never
# a Lua number, which would print in exponent notation. Shared by every publisher of counts.
VERSION_NEXT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  redis.call('SET', KEYS[1], now[1] .. string.format('%06d', tonumber(now[2])))
end
return redis.call('INCR', KEYS[1])
"""


def field(kind: str, replica: str) -> str:
    return f"{kind}|{replica}"


def shard_count() -> int:
    return max(1, settings.CHORUS_HOT_STREAM_SHARDS)


CounterState = dict[str, PNCounter]  # kind -> counter


def state_from_hashes(hashes: list[dict[bytes, bytes]]) -> CounterState:
    """Merge the shard hashes of one stream (index = shard) into one PN-counter per kind."""
    entries: dict[str, dict[str, int]] = defaultdict(dict)
    for shard, fields in enumerate(hashes):
        for raw_field, raw_count in fields.items():
            kind, _, replica = raw_field.decode().partition("|")
            entries[kind][f"{replica}#{shard}"] = int(raw_count)
    return {kind: PNCounter(p=p) for kind, p in entries.items()}


def counter_state_read(*, stream_id: int, client: redis.Redis | None = None) -> CounterState:
    """The stream's counters as Redis holds them now, all shards merged (one round trip)."""
    client = client or redis_client()
    pipe = client.pipeline(transaction=False)
    for shard in range(shard_count()):
        pipe.hgetall(taps_key(stream_id, shard))
    return state_from_hashes(pipe.execute())


async def counter_state_read_async(*, stream_id: int) -> CounterState:
    pipe = async_redis_client().pipeline(transaction=False)
    for shard in range(shard_count()):
        pipe.hgetall(taps_key(stream_id, shard))
    return state_from_hashes(await pipe.execute())


def counts_of(state: CounterState) -> dict[str, int]:
    return {kind: counter.value for kind, counter in sorted(state.items())}


# Raise a Redis entry to at least the given value, never lower it (the merge, applied in Redis).
RAISE_TO_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local wanted = tonumber(ARGV[2])
if wanted > current then redis.call('HSET', KEYS[1], ARGV[1], wanted) return wanted - current end
return 0
"""


def counter_entry_raise(*, stream_id: int, kind: str, crdt_replica: str, count: int) -> int:
    """Raise one Redis entry to ``count`` if it is lower; returns how much it was raised."""
    replica, _, shard = crdt_replica.rpartition("#")
    client = redis_client()
    return int(client.eval(RAISE_TO_SCRIPT, 1, taps_key(stream_id, int(shard)), field(kind, replica), count))
