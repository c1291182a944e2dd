"""Per-process fan-out of stream events: one Redis subscription per node, delivery in memory.

Every node (ASGI process) holds one ``StreamHub``, owned and started by ``realtime.node``. Streams
travel on a fixed number of partition channels (``realtime.pubsub_channels``); the hub subscribes to
the partitions of the streams that have local subscribers, decodes each event's stream and sequence
number once and hands the pre-encoded frame to every local subscriber without re-encoding it.

On a single Redis that is one pub/sub connection. On a Redis Cluster (``CHORUS_REDIS_CLUSTER=1``)
it is sharded pub/sub (``SSUBSCRIBE``): one plain connection per master that owns a partition the
node needs, chosen by the slot of the partition's channel (redis-py's asyncio ``ClusterPubSub``
polls its per-node connections in turn, waiting on each, which would add latency to every event).
The hub re-reads the slot map and moves partitions to their current master when a connection is
lost or answers ``MOVED``, on the server's own ``sunsubscribe`` (the slot moved away), and every
``CHORUS_PUBSUB_TOPOLOGY_SECONDS``; after any move it repairs every stream from the event log.

The hub never trusts pub/sub to be complete. For each stream it remembers the last sequence
number it delivered; a jump (a lost or reordered publish) is filled from the event log before
the later event goes out, and a periodic tail check compares that number with the stream's head
in PostgreSQL, so even a lost final event, a silent Redis reconnect or a failover is repaired
within ``CHORUS_HUB_TAIL_CHECK_SECONDS``.

It also follows each stream's epoch. When a stream enters a new one (an event or notice of a later
epoch, or the tail check's read of the database), the hub hands every local subscriber a reset to
the epoch's first position, then delivers the new epoch's events from there. Events stamped with
an older epoch are dropped. This costs a comparison per event per node, nothing per delivery.
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisClusterException, RedisError

from project.redis import redis_async_client, redis_cluster_enabled, redis_pubsub_client, stream_partition
from realtime.events import (
    EPOCH_MARK,
    USER_MARK,
    decode_epoch_notice,
    decode_published,
    decode_stream_message,
    decode_user_frame,
    snapshot_kind_version,
)
from realtime.pubsub_channels import partition_channel
from realtime.reads import read_quick
from realtime.selectors import StreamPosition, stream_event_frames, stream_positions
from realtime.transport import text_frame_bytes

logger = logging.getLogger(__name__)

REPAIR_PAGE = 500
# A stream with no local subscriber is kept this long, so a reconnect storm or a flapping client
# does not churn subscriptions; its partition is unsubscribed when no stream of it is left.
IDLE_UNSUBSCRIBE_SECONDS = 30.0
# Direct writes between two yields to the event loop while fanning one event out.
INLINE_BATCH = 100
# An event arriving sooner than this after the stream's last fan-out ended is part of a burst:
# queued for the senders, not written directly.
INLINE_MIN_GAP_SECONDS = 0.005
# What a lost or moving Redis raises (RedisClusterException: a slot without a master in a failover).
REDIS_TROUBLE = (RedisError, OSError, RedisClusterException)
SINGLE = "redis"  # the name of the one connection to a single Redis


class Subscriber(Protocol):
    """One local socket, as the hub sees it (``realtime.outbound.Outbound``)."""

    user_id: int | None  # frames meant for one user reach only the sockets of that user

    def offer(self, seq: int, frame: str) -> None:
        """Take one event frame without blocking; called in sequence order."""

    def can_send_now(self, seq: int) -> bool:
        """True if ``send_now`` would write this event at once, without waiting on anything."""

    def write_encoded(self, seq: int, data: bytes) -> bool:
        """Write one event's frame, encoded once for all sockets, now (only after ``can_send_now``);
        False if nothing was written (then ``send_now``); never raises."""

    async def send_now(self, seq: int, frame: str) -> None:
        """Write one event directly (only after ``can_send_now``); never raises."""

    def offer_snapshot(self, kind: str, frame: str) -> None:
        """Take the latest snapshot of ``kind`` without blocking; it replaces an unsent older one."""

    def reset(self, epoch: int, seq: int) -> None:
        """The stream entered ``epoch``: events offered from now on follow ``seq``; never blocks."""

    async def leave(self) -> None:
        """The node is draining: tell the client where it is and close; never raises."""


@dataclass(eq=False)
class _StreamState:
    stream_id: int
    partition: int
    ready: asyncio.Future[None]
    epoch: int = 0
    last_seq: int = 0
    subscribers: set[Subscriber] = field(default_factory=set)
    idle_since: float | None = None
    last_fan_out: float = 0.0
    # One fan-out of the stream at a time: a fan-out yields to the loop part-way, and the tail
    # check's repair must not hand out the next event to some subscribers before this one.
    fan_out_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    snapshot_versions: dict[str, int] = field(default_factory=dict)  # last forwarded version per kind


class _Connection:
    """One pub/sub connection: to the single Redis, or to one cluster master (sharded pub/sub)."""

    def __init__(self, name: str, client: aioredis.Redis, *, sharded: bool) -> None:
        self.name = name
        self.client = client
        self.sharded = sharded
        self.pubsub = client.pubsub()
        self.channels: set[str] = set()
        self.broken = False
        self.reader: asyncio.Task[None] | None = None

    async def add(self, channel: str) -> None:
        # One channel per command: channels of different slots may not share an SSUBSCRIBE.
        await (self.pubsub.ssubscribe(channel) if self.sharded else self.pubsub.subscribe(channel))
        self.channels.add(channel)

    def dropped_by_server(self, channel: str) -> None:
        """The server unsubscribed us itself (the channel's slot moved): forget it here and in
        redis-py's record, so neither an unsubscribe nor a reconnect sends it to this master again."""
        self.channels.discard(channel)
        self.pubsub.shard_channels.pop(channel.encode(), None)
        self.pubsub.shard_channels.pop(channel, None)

    async def remove(self, channel: str) -> None:
        if channel not in self.channels:
            return
        self.channels.discard(channel)
        if not self.broken:
            with contextlib.suppress(*REDIS_TROUBLE):
                await (self.pubsub.sunsubscribe(channel) if self.sharded else self.pubsub.unsubscribe(channel))

    async def close(self) -> None:
        if self.reader is not None and self.reader is not asyncio.current_task():
            self.reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.reader
        with contextlib.suppress(*REDIS_TROUBLE):
            await self.pubsub.aclose()
        with contextlib.suppress(*REDIS_TROUBLE):
            await self.client.aclose()


# On the quick-read threads: a repair is never queued behind sockets replaying the log.
_fetch_frames = read_quick(stream_event_frames)
_fetch_positions = read_quick(stream_positions)


class StreamHub:
    def __init__(self, *, tail_check_seconds: float, topology_seconds: float = 5.0) -> None:
        self._tail_check_seconds = tail_check_seconds
        self._topology_seconds = topology_seconds
        self._cluster = redis_cluster_enabled()
        self._streams: dict[int, _StreamState] = {}
        self._owner: dict[int, str] = {}  # subscribed partition -> name of the connection carrying it
        self._connections: dict[str, _Connection] = {}
        self._subscriptions = asyncio.Lock()  # one change of subscriptions at a time
        self._topology_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # --- subscriptions -------------------------------------------------------------------------

    async def subscribe(self, *, stream_id: int, subscriber: Subscriber) -> None:
        """Register a local subscriber; it receives every event published after this returns."""
        state = self._streams.get(stream_id)
        if state is None:
            state = _StreamState(
                stream_id=stream_id,
                partition=stream_partition(stream_id),
                ready=asyncio.get_running_loop().create_future(),
            )
            self._streams[stream_id] = state
            try:
                try:
                    await self._partition_subscribe(state.partition)
                except RedisClusterException as exc:  # no master for the slot right now: as if Redis were down
                    raise ConnectionError(str(exc)) from exc
                # Read the head only after SUBSCRIBE went out: anything committed later arrives by
                # pub/sub or, if that publish is lost, by the tail check.
                position = (await _fetch_positions(stream_ids=[stream_id])).get(stream_id)
                if position is not None:
                    state.epoch, state.last_seq = position.epoch, position.head
                state.ready.set_result(None)
            except BaseException as exc:
                self._forget(state)
                if isinstance(exc, Exception):
                    state.ready.set_exception(exc)
                    state.ready.exception()  # mark retrieved: this caller re-raises it below
                else:
                    state.ready.cancel()
                raise
        else:
            await asyncio.shield(state.ready)
        state.subscribers.add(subscriber)
        state.idle_since = None

    def unsubscribe(self, *, stream_id: int, subscriber: Subscriber) -> None:
        """Forget a subscriber; costs no I/O, so a mass disconnect is cheap."""
        state = self._streams.get(stream_id)
        if state is None:
            return
        state.subscribers.discard(subscriber)
        if not state.subscribers:
            state.idle_since = time.monotonic()

    def _forget(self, state: _StreamState) -> None:
        self._streams.pop(state.stream_id, None)

    async def _partition_subscribe(self, partition: int) -> None:
        """Subscribe to a partition's channel unless the node already is (on its owner's connection)."""
        if partition in self._owner:
            return
        async with self._subscriptions:
            if partition in self._owner:
                return
            await self._place(partition, await self._owner_name(partition_channel(partition)))

    async def _place(self, partition: int, owner: str) -> None:
        """Subscribe the partition's channel on the connection named ``owner`` (made if needed)."""
        connection = await self._connection(owner)
        try:
            await connection.add(partition_channel(partition))
        except BaseException:
            if not connection.channels:
                await self._drop_connection(connection)
            raise
        if connection.reader is None:
            connection.reader = asyncio.create_task(self._read_loop(connection), name=f"stream-hub-reader-{owner}")
        self._owner[partition] = owner

    async def _owner_name(self, channel: str) -> str:
        """The connection a channel belongs on: the single Redis, or the master of its slot."""
        if not self._cluster:
            return SINGLE
        cluster = redis_async_client("data")
        if not cluster.nodes_manager.slots_cache:
            await cluster.initialize()
        return cluster.get_node_from_key(channel).name

    async def _connection(self, name: str) -> _Connection:
        connection = self._connections.get(name)
        if connection is not None and not connection.broken:
            return connection
        if connection is not None:
            await self._drop_connection(connection)
        if name == SINGLE:
            client = redis_pubsub_client()
        else:
            host, _, port = name.rpartition(":")
            client = redis_pubsub_client(host=host, port=int(port))
        connection = self._connections[name] = _Connection(name, client, sharded=self._cluster)
        return connection

    async def _drop_connection(self, connection: _Connection) -> None:
        if self._connections.get(connection.name) is connection:
            del self._connections[connection.name]
        for partition, name in list(self._owner.items()):
            if name == connection.name:
                del self._owner[partition]
        await connection.close()

    # --- delivery ------------------------------------------------------------------------------

    async def _fan_out(self, state: _StreamState, seq: int, frame: str, epoch: int) -> None:
        """Hand one event of ``epoch`` to every local subscriber (none if the stream left that epoch).

        A subscriber that is idle and caught up gets the frame written directly, here: no task
        to wake per socket, which is most of what a delivery cost besides the write itself. The
        others (behind, paced by credit, not draining) get it queued for their own sender.
        """
        async with state.fan_out_lock:
            if epoch == state.epoch:
                await self._fan_out_locked(state, seq, frame)

    async def _fan_out_locked(self, state: _StreamState, seq: int, frame: str) -> None:
        if seq <= state.last_seq:
            return
        state.last_seq = seq
        # In a burst (the next event is already here when the last fan-out ends) every subscriber
        # gets the frame queued instead: its sender then writes several frames at once.
        direct = time.monotonic() - state.last_fan_out >= INLINE_MIN_GAP_SECONDS
        written = 0
        encoded: bytes | None = None  # the frame as WebSocket bytes, made once for every socket
        for subscriber in tuple(state.subscribers):
            if direct and subscriber.can_send_now(seq):
                if encoded is None:
                    encoded = text_frame_bytes(frame)
                if not subscriber.write_encoded(seq, encoded):
                    await subscriber.send_now(seq, frame)
                written += 1
                if written % INLINE_BATCH == 0:
                    await asyncio.sleep(0)  # let the rest of the node (HTTP, reads) run in between
            else:
                subscriber.offer(seq, frame)
        state.last_fan_out = time.monotonic()

    async def _repair(self, state: _StreamState, *, upto: int | None = None) -> None:
        """Deliver, from the event log, everything after the last delivered event (up to ``upto``)."""
        while True:
            epoch = state.epoch
            frames = await _fetch_frames(
                stream_id=state.stream_id, epoch=epoch, after=state.last_seq, upto=upto, limit=REPAIR_PAGE
            )
            for seq, frame in frames:
                await self._fan_out(state, seq, frame, epoch)
            if len(frames) < REPAIR_PAGE or epoch != state.epoch:
                return

    async def _enter_epoch(self, state: _StreamState, position: StreamPosition | None = None) -> bool:
        """Move to the stream's epoch in the database if it is later than ours: every subscriber gets
        a reset to the epoch's first position. True if it moved (the caller repairs from there)."""
        if position is None:
            position = (await _fetch_positions(stream_ids=[state.stream_id])).get(state.stream_id)
        if position is None:
            return False
        async with state.fan_out_lock:
            if position.epoch <= state.epoch:
                return False
            logger.info("stream %s entered epoch %s at seq %s", state.stream_id, position.epoch, position.epoch_seq)
            state.epoch, state.last_seq = position.epoch, position.epoch_seq
            for subscriber in tuple(state.subscribers):
                subscriber.reset(position.epoch, position.epoch_seq)
        return True

    async def _on_message(self, message: bytes) -> None:
        stream_id, data = decode_stream_message(message)
        state = self._streams.get(stream_id)
        if state is None or not state.ready.done():
            return
        if data.startswith(USER_MARK):
            user_id, kind, frame = decode_user_frame(data)
            for subscriber in tuple(state.subscribers):
                if subscriber.user_id == user_id:
                    subscriber.offer_snapshot(kind, frame)
            return
        if data.startswith(EPOCH_MARK):
            if decode_epoch_notice(data) > state.epoch and await self._enter_epoch(state):
                await self._repair(state)
            return
        seq, frame, epoch = decode_published(data)
        if isinstance(seq, str):
            kind, version = snapshot_kind_version(seq)
            if version is not None:
                if version <= state.snapshot_versions.get(kind, -1):
                    return  # an older state overtaken in Redis by a newer one from another publisher
                state.snapshot_versions[kind] = version
            for subscriber in tuple(state.subscribers):
                subscriber.offer_snapshot(kind, frame)
            return
        if epoch is None:
            epoch = state.epoch
        elif epoch != state.epoch and (
            # Older: published before a reset this node already made. Newer: enter it first.
            epoch < state.epoch or not await self._enter_epoch(state) or epoch != state.epoch
        ):
            return
        if seq <= state.last_seq:
            return
        if seq > state.last_seq + 1:
            logger.info(
                "gap on stream %s: have %s, got %s; repairing from the log", state.stream_id, state.last_seq, seq
            )
            await self._repair(state, upto=seq - 1)
        await self._fan_out(state, seq, frame, epoch)

    # --- background loops ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the hub's loops (topology and tail check) in the running loop; called by the node."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(self._topology_loop(), name="stream-hub-topology"),
                asyncio.create_task(self._tail_check_loop(), name="stream-hub-tail-check"),
            ]

    async def stop(self) -> None:
        """Stop the loops and close every pub/sub connection; called by the node as it stops."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for connection in list(self._connections.values()):
            await self._drop_connection(connection)

    async def _read_loop(self, connection: _Connection) -> None:
        """Read one connection until it fails, then leave it to the topology loop to rebuild or move."""
        while True:
            try:
                message = await connection.pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except REDIS_TROUBLE as exc:
                logger.warning("stream hub lost Redis connection %s (%s); resubscribing", connection.name, exc)
                connection.broken = True
                self._topology_changed.set()
                return
            if message is None:
                continue
            try:
                if message["type"] in ("message", "smessage"):
                    await self._on_message(message["data"])
                elif message["type"] == "sunsubscribe" and message["channel"].decode() in connection.channels:
                    # Not asked for: the server dropped the channel because its slot moved to another master.
                    logger.info("stream hub: %s moved away from %s", message["channel"].decode(), connection.name)
                    connection.dropped_by_server(message["channel"].decode())
                    self._topology_changed.set()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream hub failed to handle a message")
                await asyncio.sleep(0.05)  # never spin on a repeating failure

    async def _topology_loop(self) -> None:
        """Keep every wanted partition on a live connection to its current owner; repair after a move.

        Woken by a lost connection or ``MOVED`` and by a server ``sunsubscribe``; in cluster mode
        also every ``topology_seconds``. Retries with backoff while Redis is out of reach.
        """
        backoff = 0.1
        while True:
            periodic = self._topology_seconds if self._cluster else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._topology_changed.wait(), timeout=periodic)
            self._topology_changed.clear()
            try:
                moved = await self._resubscribe()
                backoff = 0.1
                if moved:
                    await self._repair_all()
            except asyncio.CancelledError:
                raise
            except REDIS_TROUBLE as exc:
                logger.warning("stream hub cannot resubscribe yet (%s); retrying in %.1fs", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._topology_changed.set()
            except Exception:
                logger.exception("stream hub failed to resubscribe")
                await asyncio.sleep(1.0)
                self._topology_changed.set()

    async def _resubscribe(self) -> bool:
        """Move the partitions whose connection broke or whose slot changed master; True if any moved.

        A partition that cannot be placed yet (its master is down and no replica promoted) stays
        unsubscribed and the error is raised after the others are placed, so the loop tries again.
        """
        async with self._subscriptions:
            if self._cluster and self._owner:
                await redis_async_client("data").nodes_manager.initialize()  # re-read the slot map
            for connection in [c for c in self._connections.values() if c.broken]:
                await self._drop_connection(connection)
            moved = False
            failure: BaseException | None = None
            for partition in sorted({state.partition for state in self._streams.values()}):
                channel = partition_channel(partition)
                try:
                    owner = await self._owner_name(channel)
                    current = self._owner.get(partition)
                    carrier = self._connections.get(current) if current is not None else None
                    if current == owner and carrier is not None and channel in carrier.channels:
                        continue
                    if current is not None and current in self._connections:
                        await self._connections[current].remove(channel)
                    self._owner.pop(partition, None)
                    await self._place(partition, owner)
                    moved = True
                except REDIS_TROUBLE as exc:
                    failure = exc
            for connection in [c for c in self._connections.values() if not c.channels]:
                await self._drop_connection(connection)
        if failure is not None:
            if moved:
                await self._repair_all()
            raise failure
        return moved

    async def _repair_all(self) -> None:
        states = [state for state in self._streams.values() if state.ready.done()]
        if not states:
            return
        positions = await _fetch_positions(stream_ids=[state.stream_id for state in states])
        for state in states:
            position = positions.get(state.stream_id)
            if position is None:
                continue
            if position.epoch > state.epoch:
                await self._enter_epoch(state, position)
            if position.epoch == state.epoch and position.head > state.last_seq:
                await self._repair(state)

    async def _tail_check_loop(self) -> None:
        while True:
            await asyncio.sleep(self._tail_check_seconds)
            try:
                await self._repair_all()
                await self._drop_idle_streams()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("stream hub tail check failed")

    async def _drop_idle_streams(self) -> None:
        now = time.monotonic()
        for state in list(self._streams.values()):
            if state.idle_since is not None and now - state.idle_since > IDLE_UNSUBSCRIBE_SECONDS:
                self._forget(state)
        wanted = {state.partition for state in self._streams.values()}
        async with self._subscriptions:
            for partition in [p for p in self._owner if p not in wanted]:
                connection = self._connections.get(self._owner.pop(partition))
                if connection is not None:
                    await connection.remove(partition_channel(partition))
                    if not connection.channels:
                        await self._drop_connection(connection)

    def offer_local_snapshot(self, *, stream_id: int, kind: str, frame: str) -> None:
        """Hand a snapshot made on this node (presence) to the stream's local subscribers."""
        state = self._streams.get(stream_id)
        if state is not None:
            for subscriber in tuple(state.subscribers):
                subscriber.offer_snapshot(kind, frame)

    def position(self, *, stream_id: int) -> tuple[int, int]:
        """``(epoch, seq)`` of the last event this node delivered for the stream ((0, 0) if not subscribed)."""
        state = self._streams.get(stream_id)
        return (state.epoch, state.last_seq) if state is not None else (0, 0)

    def subscribers(self) -> list[Subscriber]:
        """Every local subscriber of every stream (what a draining node must hand over)."""
        return [subscriber for state in self._streams.values() for subscriber in state.subscribers]

    def stream_counts(self) -> dict[int, int]:
        """Local subscribers per stream (what the node registry and presence report)."""
        return {state.stream_id: len(state.subscribers) for state in self._streams.values()}

    def stats(self) -> dict[str, int]:
        return {
            "streams": len(self._streams),
            "subscribers": sum(len(state.subscribers) for state in self._streams.values()),
        }
