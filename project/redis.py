"""Every Redis client of Chorus is built here: one factory per role, sync and per event loop async.

A role names the Redis it talks to and how long a caller may wait for it (``ROLES``). With
``CHORUS_REDIS_CLUSTER=1`` the URL of a role names a seed node of a Redis Cluster and the factories
return ``RedisCluster`` clients (the broker role excepted: the Celery broker is never the cluster).
Nothing else in the code constructs a client.

Sync clients are built once per process: redis-py pools reset themselves after a fork, so they are
safe in prefork Celery workers too. Asyncio clients are built once per event loop (a pool must not
cross loops). Short timeouts throughout: every caller treats Redis as something that can be down.

The key layout that makes the data clusterable lives here too: streams map onto a fixed number of
partitions (``CHORUS_PUBSUB_PARTITIONS``), and each partition has a hash tag whose slot lies in its
own equal share of the 16,384 slots, so partitions spread evenly over any set of masters. A
stream's pub/sub channel and every key a script or transaction touches together carry its
partition's tag (``stream_tag``).
"""

import asyncio
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.retry import Retry


@dataclass(frozen=True)
class Role:
    setting: str  # the settings name of its URL
    timeout: float  # seconds a command (and a connect) may take
    pool_setting: str | None = None  # the settings name of a bounded pool's size (per node in a cluster)
    clusterable: bool = True
    # In cluster mode, how often a command is tried again after a connection error or a MOVED while
    # the client re-reads the slot map (a failover takes the cluster's node timeout to complete).
    cluster_retries: int = 3


ROLES: dict[str, Role] = {
    # Chorus' own data (REDIS_URL): pub/sub, tap counters, hot streams, publish marks, failure notes.
    "data": Role("CHORUS_REDIS_URL", 2.0, cluster_retries=6),
    # The same Redis on a request's path (read-your-writes markers): never waits long.
    "quick": Role("CHORUS_REDIS_URL", 0.25, cluster_retries=1),
    # The health probe's ping.
    "probe": Role("CHORUS_REDIS_URL", 1.0, cluster_retries=1),
    # The node's registry and presence heartbeat: a small pool of its own, so a storm of sockets
    # never starves it.
    "node": Role("CHORUS_REDIS_URL", 3.0, pool_setting="CHORUS_NODE_REDIS_POOL_SIZE"),
    # Token buckets, tiers and django-ratelimit's counts (CHORUS_GATEWAY_REDIS_URL).
    "gateway": Role("CHORUS_GATEWAY_REDIS_URL", 0.25, cluster_retries=1),
    # The comments page cache and stream counters (CHORUS_CACHE_REDIS_URL).
    "cache": Role("CHORUS_CACHE_REDIS_URL", 0.25, cluster_retries=1),
    # The Celery broker, when it is a Redis (queue depth for load shedding): never the cluster.
    "broker": Role("CELERY_BROKER_URL", 0.25, clusterable=False),
}


def redis_cluster_enabled() -> bool:
    return bool(getattr(settings, "CHORUS_REDIS_CLUSTER", False))


def _url(role: Role) -> str:
    return getattr(settings, role.setting)


def _clustered(role: Role) -> bool:
    return role.clusterable and redis_cluster_enabled()


def _max_connections(role: Role) -> int | None:
    return None if role.pool_setting is None else int(getattr(settings, role.pool_setting))


def _cluster_retry(role: Role, retry_class: type) -> Any:
    return retry_class(ExponentialBackoff(cap=1.0, base=0.05), role.cluster_retries)


@cache
def redis_client(role: str = "data") -> Any:
    """The process's sync client of ``role`` (a ``redis.Redis``, or a ``RedisCluster`` in cluster mode)."""
    spec = ROLES[role]
    options: dict[str, Any] = {"socket_timeout": spec.timeout, "socket_connect_timeout": spec.timeout}
    if _clustered(spec):
        if (size := _max_connections(spec)) is not None:
            options["max_connections"] = size
        return RedisCluster.from_url(_url(spec), retry=_cluster_retry(spec, Retry), **options)
    if (size := _max_connections(spec)) is not None:
        pool = redis.BlockingConnectionPool.from_url(_url(spec), max_connections=size, timeout=5, **options)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(_url(spec), **options)


_async_clients: dict[tuple[str, int], Any] = {}


def redis_async_client(role: str = "data") -> Any:
    """This event loop's asyncio client of ``role`` (``RedisCluster`` in cluster mode)."""
    key = (role, id(asyncio.get_running_loop()))
    client = _async_clients.get(key)
    if client is None:
        client = _async_clients[key] = _new_async_client(ROLES[role])
    return client


def _new_async_client(spec: Role) -> Any:
    options: dict[str, Any] = {"socket_timeout": spec.timeout, "socket_connect_timeout": min(spec.timeout, 2.0)}
    size = _max_connections(spec)
    if _clustered(spec):
        if size is not None:
            options["max_connections"] = size
        return AsyncRedisCluster.from_url(_url(spec), retry=_cluster_retry(spec, AsyncRetry), **options)
    if size is not None:
        pool = aioredis.BlockingConnectionPool.from_url(_url(spec), max_connections=size, timeout=5, **options)
        return aioredis.Redis(connection_pool=pool)
    return aioredis.Redis.from_url(_url(spec), **options)


def redis_pubsub_client(*, host: str | None = None, port: int | None = None) -> aioredis.Redis:
    """A plain asyncio client for the stream hub's pub/sub connection: to ``REDIS_URL``, or in cluster
    mode to one master (``host``, ``port`` from the slot map), with the URL's credentials and TLS.

    No read timeout: a subscribed connection is silent for as long as nothing is published.
    """
    url = settings.CHORUS_REDIS_URL
    if host is not None and port is not None:
        parts = urlsplit(url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
        url = urlunsplit((parts.scheme, netloc, "/0", parts.query, ""))
    return aioredis.Redis.from_url(url, socket_connect_timeout=2, max_connections=4)


def redis_ping(role: str = "probe") -> bool:
    """Whether the role's Redis answers: in cluster mode, whether some node of the cluster answers
    (a failover in progress leaves the rest of the cluster serving; it is no reason to stop a node)."""
    client = redis_client(role)
    if isinstance(client, RedisCluster):
        return bool(client.ping(target_nodes=RedisCluster.RANDOM))
    return bool(client.ping())


def redis_text(reply: bytes | str) -> str:
    """A string reply as text. redis-py types replies as ``bytes | str`` (it depends on
    ``decode_responses``); the clients here never decode, so it is bytes."""
    return reply.decode() if isinstance(reply, bytes) else reply


def pipeline_script(pipe: Any, script: Any, *, keys: list[str], args: list[Any]) -> None:
    """Queue a registered Lua script in a pipeline: by SHA on a single Redis (the pipeline loads it
    if the server lacks it), as ``EVAL`` of its text in a cluster, whose pipelines refuse ``EVALSHA``
    (and a promoted replica would not have the script loaded anyway)."""
    if isinstance(pipe, RedisCluster):  # ClusterPipeline derives from RedisCluster
        pipe.execute_command("EVAL", script.script, len(keys), *keys, *args)
    else:
        script(keys=keys, args=args, client=pipe)


# --- partitions and hash tags --------------------------------------------------------------------


@lru_cache(maxsize=8)
def partition_tags(count: int) -> tuple[str, ...]:
    """One short hash tag per partition, the ``i``-th hashing into the ``i``-th of ``count`` equal
    slot ranges, so partitions spread evenly over the masters whatever the slot assignment."""
    tags = []
    for index in range(count):
        low = index * REDIS_CLUSTER_HASH_SLOTS // count
        high = (index + 1) * REDIS_CLUSTER_HASH_SLOTS // count
        attempt = 0
        while not low <= key_slot(f"p{index}.{attempt}".encode()) < high:
            attempt += 1
        tags.append(f"p{index}.{attempt}")
    return tuple(tags)


def stream_partition(stream_id: int) -> int:
    return stream_id % settings.CHORUS_PUBSUB_PARTITIONS


def partition_tag(partition: int) -> str:
    """``{tag}``: the hash tag of a partition, braces included, to put inside a key or channel name."""
    return "{" + partition_tags(settings.CHORUS_PUBSUB_PARTITIONS)[partition] + "}"


def stream_tag(stream_id: int) -> str:
    """The hash tag of the stream's partition: keys used together for a stream share its slot."""
    return partition_tag(stream_partition(stream_id))
