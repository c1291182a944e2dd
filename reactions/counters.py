"""Tap counters in Redis: the live copy of each stream's per-kind PN-counters.

Layout (``P`` is ``CHORUS_REDIS_PREFIX``):

- ``P:rx:taps:<stream>:<shard>`` hash, field ``<kind>|<process>@<life>`` -> taps counted by that
  process in that life of the hash. A cold stream uses shard 0 only; a hot one spreads its taps
  over ``CHORUS_HOT_STREAM_SHARDS`` keys by hashing the user id, so no single key takes the whole
  stream's write load. The CRDT replica of an entry is ``<process>@<life>#<shard>``: each replica
  only ever grows its own entry, which is what makes the per-replica-max merge exact.
- The hash's field ``~life`` names its life: ``<server>/<random>``, made afresh by the tap script
  (``TAP_COUNT_SCRIPT``) when the hash has none (Redis lost it: a restart without persistence, a
  flush, an eviction) or when it was made on another Redis server (a failover to a replica that
  may lag). A process whose entry Redis lost therefore never counts on from zero under a name
  PostgreSQL already holds a larger count for: it starts a new replica, and totals are the sum.
- ``P:rx:server``: the ``run_id`` of the Redis server holding these keys, written by every new
  connection of this module's clients before its first command (``_note_server``).
- ``P:rx:rate:<stream>:<shard>:<second>``: taps per second (expires), the input of hot detection.
- ``P:rx:dirty`` set of stream ids with taps not yet flushed to PostgreSQL.
- ``P:rx:ver:<stream>``: version of the stream's last count snapshot frame. It starts from the Redis
  server's clock in microseconds (``VERSION_NEXT_SCRIPT``), so versions keep rising when Redis
  loses the key (a restart without persistence) instead of starting again at 1.
"""

import os
import secrets
import socket
from collections import defaultdict
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from reactions.crdt import PNCounter

# The run_id of the Redis server this process last connected to (the tap script's fallback when
# ``P:rx:server`` is gone).
_server_seen = "unknown"


def _run_id(info: bytes | str) -> str:
    text = info.decode() if isinstance(info, bytes) else info
    for line in text.splitlines():
        if line.startswith("run_id:"):
            return line.partition(":")[2].strip()[:16]
    return "unknown"


def _note_server(connection: Any) -> None:
    """On every new connection, before its first command: record which Redis server holds the
    counters, so a tap on a server other than the one a hash was made on starts a new life."""
    global _server_seen
    connection.on_connect()
    connection.send_command("INFO", "server")
    _server_seen = _run_id(connection.read_response())
    connection.send_command("SET", server_key(), _server_seen)
    connection.read_response()


async def _note_server_async(connection: Any) -> None:
    global _server_seen
    await connection.on_connect()
    await connection.send_command("INFO", "server")
    _server_seen = _run_id(await connection.read_response())
    await connection.send_command("SET", server_key(), _server_seen)
    await connection.read_response()


@lru_cache(maxsize=1)
def redis_client() -> redis.Redis:
    # redis-py pools reset themselves after fork, so one client per process is safe in Celery.
    return redis.Redis.from_url(
        settings.CHORUS_REDIS_URL, socket_timeout=2, socket_connect_timeout=2, redis_connect_func=_note_server
    )


_async_clients: dict[int, aioredis.Redis] = {}


def async_redis_client() -> aioredis.Redis:
    """One asyncio client per event loop (an asyncio pool must not cross loops)."""
    import asyncio

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = aioredis.Redis.from_url(
            settings.CHORUS_REDIS_URL,
            socket_timeout=2,
            socket_connect_timeout=2,
            redis_connect_func=_note_server_async,
        )
        _async_clients[loop_id] = client
    return client


def replica_id() -> str:
    """This process's name in its counter entries: configured, or ``<host>:<pid>`` (checked per call:
    Celery forks). The entry's replica adds the hash's life to it (``TAP_COUNT_SCRIPT``)."""
    return settings.CHORUS_REACTION_REPLICA_ID or f"{socket.gethostname()}:{os.getpid()}"


def _prefix() -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:rx"


def taps_key(stream_id: int, shard: int) -> str:
    return f"{_prefix()}:taps:{stream_id}:{shard}"


def server_key() -> str:
    return f"{_prefix()}:server"


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


# Count one tap: HINCRBY of this process's entry in the hash's current life (see the module
# docstring), making a new life first if the hash has none or was made on another server.
# KEYS: server key, taps hash. ARGV: kind, process, fallback server run_id, a fresh random token.
# Cross-key (fine on one Redis; a Redis Cluster would need the two keys in one hash slot).
TAP_COUNT_SCRIPT = """
local server = redis.call('GET', KEYS[1])
if not server then
  server = ARGV[3]
  redis.call('SET', KEYS[1], server)
end
local life = redis.call('HGET', KEYS[2], '~life')
if not life or string.sub(life, 1, #server + 1) ~= server .. '/' then
  life = server .. '/' .. ARGV[4]
  redis.call('HSET', KEYS[2], '~life', life)
end
return redis.call('HINCRBY', KEYS[2], ARGV[1] .. '|' .. ARGV[2] .. '@' .. life, 1)
"""


def tap_count_command(*, stream_id: int, shard: int, kind: str) -> tuple[Any, ...]:
    """The arguments of ``EVAL`` that counts one tap of this process (for a pipeline)."""
    return (TAP_COUNT_SCRIPT, 2, server_key(), taps_key(stream_id, shard), kind, replica_id(), _server_seen,
            secrets.token_hex(8))  # fmt: skip


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
