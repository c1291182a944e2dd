"""Tap counters in Redis: the live copy of each stream's per-kind PN-counters.

Layout (``P`` is ``CHORUS_REDIS_PREFIX``, ``{t}`` the hash tag of the stream's partition,
``project.redis.stream_tag``: every key a tap's script or transaction touches shares one slot of a
Redis Cluster):

- ``P:rx:{t}:taps:<stream>:<shard>`` hash, field ``<kind>|<process>@<life>`` -> taps counted by that
  process in that life of the hash. A cold stream uses shard 0 only; a hot one spreads its taps
  over ``CHORUS_HOT_STREAM_SHARDS`` keys by hashing the user id, so no single key takes the whole
  stream's write load. The CRDT replica of an entry is ``<process>@<life>#<shard>``: each replica
  only ever grows its own entry, which is what makes the per-replica-max merge exact.
- The hash's field ``~life`` names its life: ``<server>/<random>``, made afresh by the tap script
  (``TAP_COUNT_SCRIPT``) when the hash has none (Redis lost it: a restart without persistence, a
  flush, an eviction) or when it was made on another Redis server (a failover to a replica that
  may lag). The script reads the server it runs on from ``INFO`` (its ``run_id``, new at every
  start), so in a cluster each master judges its own hashes. A process whose entry Redis lost
  therefore never counts on from zero under a name PostgreSQL already holds a larger count for:
  it starts a new replica, and totals are the sum.
- ``P:rx:{t}:rate:<stream>:<shard>:<second>``: taps per second (expires), the input of hot detection.
- ``P:rx:{t}:dirty`` set of the partition's stream ids with taps not yet flushed to PostgreSQL.
- ``P:rx:{t}:ver:<stream>``: version of the stream's last count snapshot frame. It starts from the Redis
  server's clock in microseconds (``VERSION_NEXT_SCRIPT``), so versions keep rising when Redis
  loses the key (a restart without persistence) instead of starting again at 1.
"""

import os
import secrets
import socket
from collections import defaultdict
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from project.redis import partition_tag, redis_async_client, stream_tag
from project.redis import redis_client as _client
from reactions.crdt import PNCounter


def redis_client() -> redis.Redis:
    return _client("data")


def async_redis_client() -> aioredis.Redis:
    """This event loop's client (an asyncio pool must not cross loops)."""
    return redis_async_client("data")


def replica_id() -> str:
    """This process's name in its counter entries: configured, or ``<host>:<pid>`` (checked per call:
    Celery forks). The entry's replica adds the hash's life to it (``TAP_COUNT_SCRIPT``)."""
    return settings.CHORUS_REACTION_REPLICA_ID or f"{socket.gethostname()}:{os.getpid()}"


def _prefix() -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:rx"


def taps_key(stream_id: int, shard: int) -> str:
    return f"{_prefix()}:{stream_tag(stream_id)}:taps:{stream_id}:{shard}"


def rate_key(stream_id: int, shard: int, second: int) -> str:
    return f"{_prefix()}:{stream_tag(stream_id)}:rate:{stream_id}:{shard}:{second}"


def dirty_key(stream_id: int) -> str:
    """The dirty set of the stream's partition (in the slot of the stream's other keys)."""
    return f"{_prefix()}:{stream_tag(stream_id)}:dirty"


def dirty_keys() -> list[str]:
    """Every partition's dirty set (what the flush drains)."""
    return [f"{_prefix()}:{partition_tag(p)}:dirty" for p in range(settings.CHORUS_PUBSUB_PARTITIONS)]


def version_key(stream_id: int) -> str:
    return f"{_prefix()}:{stream_tag(stream_id)}:ver:{stream_id}"


def stream_id_of_taps_key(key: str) -> int:
    """The stream id in a ``taps_key``."""
    return int(key.rsplit(":", 2)[1])


def taps_key_pattern() -> str:
    return f"{_prefix()}:*:taps:*"


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


# Count one tap: HINCRBY of this process's entry in the hash's current life (see the module
# docstring), making a new life first if the hash has none or was made on another server: the
# server is the one running the script (its run_id, from INFO, about 2 us).
# KEYS: taps hash. ARGV: kind, process, a fresh random token.
TAP_COUNT_SCRIPT = """
local server = string.sub(string.match(redis.call('INFO', 'server'), 'run_id:(%w+)'), 1, 16)
local life = redis.call('HGET', KEYS[1], '~life')
if not life or string.sub(life, 1, #server + 1) ~= server .. '/' then
  life = server .. '/' .. ARGV[3]
  redis.call('HSET', KEYS[1], '~life', life)
end
return redis.call('HINCRBY', KEYS[1], ARGV[1] .. '|' .. ARGV[2] .. '@' .. life, 1)
"""


def tap_count_command(*, stream_id: int, shard: int, kind: str) -> tuple[Any, ...]:
    """The arguments of ``EVAL`` that counts one tap of this process (for a pipeline)."""
    return (TAP_COUNT_SCRIPT, 1, taps_key(stream_id, shard), kind, replica_id(), secrets.token_hex(8))


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
            kind, bar, replica = raw_field.decode().partition("|")
            if bar:  # not the hash's ``~life``
                entries[kind][f"{replica}#{shard}"] = int(raw_count)
    return {kind: PNCounter(p=p) for kind, p in entries.items()}


def counter_state_read(*, stream_id: int, client: redis.Redis | redis.RedisCluster | None = None) -> CounterState:
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
