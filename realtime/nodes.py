"""The node registry: which ASGI nodes are alive, where clients reach them, and how loaded they are.

Every node writes ``{prefix}:node:{registry:<pool>}:{node_id}`` (JSON: public WebSocket URL,
connection count, connections per stream, connection limit) with a TTL of ``CHORUS_NODE_TTL_SECONDS``
every ``CHORUS_NODE_HEARTBEAT_SECONDS``, and adds its id to the set ``{prefix}:nodes:{registry:<pool>}``.
The pool's hash tag keeps a pool's keys in one slot of a Redis Cluster, so presence reads them
with one ``MGET``. Redis
expires the key of a node that stops (SIGKILL included), so a dead node disappears within the TTL
with no clock comparison between machines; readers prune ids whose key is gone. Heartbeat age is
``TTL - remaining TTL``, again by Redis' own clock. A node that shuts down cleanly removes its
entry at once.

The same loop pushes presence (viewers per stream, summed over live nodes) to local sockets. The
node (``realtime.node``) starts the heartbeat and, on a clean shutdown, takes the entry out.
"""

import asyncio
import atexit
import contextlib
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, cast

import redis
from django.conf import settings
from redis.exceptions import RedisError

from project.redis import redis_async_client, redis_client
from realtime.hub import StreamHub
from realtime.protocol import presence_frame
from realtime.stats import NodeStats

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    url: str
    connections: int
    max_connections: int
    streams: dict[int, int]  # stream id -> local connections
    heartbeat_age: float  # seconds since the last heartbeat

    @property
    def over_limit(self) -> bool:
        return self.connections >= self.max_connections


def _pool_tag() -> str:
    return "{registry:" + settings.CHORUS_NODE_POOL + "}"


def _set_key() -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:nodes:{_pool_tag()}"


def _node_key(node_id: str) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:node:{_pool_tag()}:{node_id}"


def _parse(node_id: str, raw: bytes | None, pttl: int) -> NodeInfo | None:
    if raw is None or pttl < 0:
        return None
    data = json.loads(raw)
    return NodeInfo(
        node_id=node_id,
        url=data["url"],
        connections=int(data["connections"]),
        max_connections=int(data["max_connections"]),
        streams={int(k): int(v) for k, v in data["streams"].items()},
        heartbeat_age=max(0.0, settings.CHORUS_NODE_TTL_SECONDS - pttl / 1000),
    )


# --- reads (HTTP views, management commands, metrics) ---------------------------------------------


def _redis() -> redis.Redis:
    return redis_client("data")


def node_list() -> list[NodeInfo]:
    """The live nodes of this pool, by id. Raises RedisError when Redis is unreachable."""
    client = _redis()
    ids = sorted(member.decode() for member in cast(set[bytes], client.smembers(_set_key())))
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for node_id in ids:
        pipe.get(_node_key(node_id))
        pipe.pttl(_node_key(node_id))
    replies = pipe.execute()
    nodes, dead = [], []
    for i, node_id in enumerate(ids):
        info = _parse(node_id, replies[2 * i], replies[2 * i + 1])
        (nodes.append(info) if info is not None else dead.append(node_id))
    if dead:
        client.srem(_set_key(), *dead)
    return nodes


def _rendezvous_score(node_id: str, slug: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{node_id}\0{slug}".encode(), digest_size=8).digest(), "big")


def node_choose(*, nodes: list[NodeInfo], slug: str) -> NodeInfo | None:
    """The node a stream's clients should use: highest rendezvous score, unless it is over its limit.

    Rendezvous hashing keeps a stream on the same node while the node set is unchanged (one hub
    subscription serves all its viewers) and moves only the streams of a node that joins or dies.
    An overloaded first choice gives way to the least-loaded node.
    """
    if not nodes:
        return None
    first = max(nodes, key=lambda node: _rendezvous_score(node.node_id, slug))
    if not first.over_limit:
        return first
    return min(nodes, key=lambda node: (node.connections / max(node.max_connections, 1), node.node_id))


def stream_ws_url(*, node: NodeInfo, slug: str) -> str:
    return f"{node.url.rstrip('/')}/ws/streams/{slug}/"


def public_stream_ws_url(*, slug: str) -> str:
    """The stream's socket through the load balancer (``CHORUS_PUBLIC_WS_URL``)."""
    return f"{settings.CHORUS_PUBLIC_WS_URL.rstrip('/')}/ws/streams/{slug}/"


# --- the node's own heartbeat (runs in the ASGI server's event loop) --------------------------------


class NodeHeartbeat:
    """Registers this node and keeps its entry fresh; pushes presence to local sockets."""

    def __init__(self, *, hub: StreamHub, stats: NodeStats) -> None:
        self.node_id = settings.CHORUS_NODE_ID or f"{socket.gethostname()}:{os.getpid()}"
        self.url = settings.CHORUS_NODE_WS_URL
        self._hub = hub
        self._stats = stats
        self._addressed = asyncio.Event()  # set once the URL is known
        if self.url:
            self._addressed.set()
        self._task: asyncio.Task[None] | None = None
        self._presence_sent: dict[int, int] = {}
        self._deregistered = False

    def start(self) -> None:
        """Start beating in the running loop; the first beat waits for the node's URL."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-heartbeat")
        atexit.register(self.deregister)  # a server that stops without telling the node

    def address_from(self, scope: dict[str, Any]) -> None:
        """Learn the node's URL from the address a request reached (unless ``CHORUS_NODE_WS_URL`` names it)."""
        if self.url:
            return
        server = scope.get("server")
        if server:
            self.url = f"ws://{server[0]}:{server[1]}"
            self._addressed.set()

    def deregister(self) -> None:
        """Leave the registry now, on a clean shutdown: discovery stops offering this node at once.

        A node that dies without running this (SIGKILL, power loss) still disappears when its
        entry's TTL runs out. Never raises: at worst the TTL does the job. Idempotent.
        """
        if self._deregistered:
            return
        self._deregistered = True
        if self._task is not None:
            with contextlib.suppress(RuntimeError):  # the loop may already be closed (atexit)
                self._task.cancel()
        if not self._addressed.is_set():
            return  # never registered
        try:
            pipe = _redis().pipeline(transaction=False)
            pipe.delete(_node_key(self.node_id))
            pipe.srem(_set_key(), self.node_id)
            pipe.execute()
            logger.info("node %s left the registry", self.node_id)
        except (RedisError, OSError) as exc:
            logger.warning("node %s could not leave the registry (%s); its entry expires", self.node_id, exc)

    async def _run(self) -> None:
        await self._addressed.wait()
        while True:
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("node heartbeat failed (%s); retrying", exc)
            except Exception:
                logger.exception("node heartbeat failed")
            await asyncio.sleep(settings.CHORUS_NODE_HEARTBEAT_SECONDS)

    async def beat(self) -> None:
        if self._deregistered:
            return
        counts = self._hub.stream_counts()
        data = {
            "url": self.url,
            "connections": self._stats.connections,
            "max_connections": settings.CHORUS_NODE_MAX_CONNECTIONS,
            "streams": {str(k): v for k, v in counts.items() if v},
        }
        pipe = redis_async_client("node").pipeline(transaction=False)
        pipe.set(_node_key(self.node_id), json.dumps(data), px=int(settings.CHORUS_NODE_TTL_SECONDS * 1000))
        pipe.sadd(_set_key(), self.node_id)
        pipe.smembers(_set_key())
        *_, members = await pipe.execute()
        await self._push_presence(sorted(m.decode() for m in members), counts)

    async def _push_presence(self, ids: list[str], local: dict[int, int]) -> None:
        """Send each local stream's viewer count (all nodes) to its sockets when it changed: at most once a beat."""
        if not local:
            self._presence_sent.clear()
            return
        raws = await redis_async_client("node").mget([_node_key(node_id) for node_id in ids])
        totals: dict[int, int] = dict.fromkeys(local, 0)
        for raw in raws:
            if raw is None:
                continue
            for stream_id, count in json.loads(raw)["streams"].items():
                if int(stream_id) in totals:
                    totals[int(stream_id)] += int(count)
        for stream_id, viewers in totals.items():
            if self._presence_sent.get(stream_id) != viewers:
                self._presence_sent[stream_id] = viewers
                self._hub.offer_local_snapshot(
                    stream_id=stream_id, kind="presence", frame=presence_frame(viewers=viewers)
                )
        for stream_id in list(self._presence_sent):
            if stream_id not in local:
                del self._presence_sent[stream_id]

    def presence(self, *, stream_id: int) -> int | None:
        """The stream's viewer count as of the last heartbeat (None before the first one)."""
        return self._presence_sent.get(stream_id)
