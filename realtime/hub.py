"""Per-process fan-out of stream events: one Redis subscription per node, delivery in memory.

Every node (ASGI process) holds one ``StreamHub``. It keeps a single Redis pub/sub connection
subscribed to the streams that have local subscribers, decodes each event's sequence number once
and hands the pre-encoded frame to every local subscriber without re-encoding it.

The hub never trusts pub/sub to be complete. For each stream it remembers the last sequence
number it delivered; a jump (a lost or reordered publish) is filled from the event log before
the later event goes out, and a periodic tail check compares that number with the stream's head
in PostgreSQL, so even a lost final event or a silent Redis reconnect is repaired within
``CHORUS_HUB_TAIL_CHECK_SECONDS``.

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
from django.conf import settings
from redis.exceptions import RedisError

from realtime.channels import hub_control_channel, stream_channel
from realtime.events import (
    EPOCH_MARK,
    USER_MARK,
    decode_epoch_notice,
    decode_published,
    decode_user_frame,
    snapshot_kind_version,
)
from realtime.reads import read_quick
from realtime.selectors import StreamPosition, stream_event_frames, stream_positions

logger = logging.getLogger(__name__)

REPAIR_PAGE = 500
# A stream with no local subscriber keeps its subscription this long, so a reconnect storm or a
# flapping client does not churn SUBSCRIBE/UNSUBSCRIBE.
IDLE_UNSUBSCRIBE_SECONDS = 30.0
# Direct writes between two yields to the event loop while fanning one event out.
INLINE_BATCH = 100
# An event arriving sooner than this after the stream's last fan-out ended is part of a burst:
# queued for the senders, not written directly.
INLINE_MIN_GAP_SECONDS = 0.005


class Subscriber(Protocol):
    def offer(self, seq: int, frame: str) -> None:
        """Take one event frame without blocking; called in sequence order."""

    def can_send_now(self, seq: int) -> bool:
        """True if ``send_now`` would write this event at once, without waiting on anything."""

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
    channel: str
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


# On the quick-read threads: a repair is never queued behind sockets replaying the log.
_fetch_frames = read_quick(stream_event_frames)
_fetch_positions = read_quick(stream_positions)


class StreamHub:
    def __init__(self, *, redis_url: str, tail_check_seconds: float) -> None:
        # One pub/sub connection is all the hub uses; the pool is capped so a reconnect loop can never
        # pile up connections (a storm of sockets costs the hub no Redis I/O at all).
        self._redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2, max_connections=4)
        self._tail_check_seconds = tail_check_seconds
        self._streams: dict[int, _StreamState] = {}
        self._by_channel: dict[bytes, _StreamState] = {}
        self._pubsub: aioredis.client.PubSub | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._start_lock = asyncio.Lock()

    # --- subscriptions -------------------------------------------------------------------------

    async def subscribe(self, *, stream_id: int, subscriber: Subscriber) -> None:
        """Register a local subscriber; it receives every event published after this returns."""
        await self._ensure_started()
        state = self._streams.get(stream_id)
        if state is None:
            state = _StreamState(
                stream_id=stream_id,
                channel=stream_channel(stream_id),
                ready=asyncio.get_running_loop().create_future(),
            )
            self._streams[stream_id] = state
            self._by_channel[state.channel.encode()] = state
            try:
                await self._connected_pubsub().subscribe(state.channel)
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
        self._by_channel.pop(state.channel.encode(), None)

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
        for subscriber in tuple(state.subscribers):
            if direct and subscriber.can_send_now(seq):
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

    async def _on_message(self, channel: bytes, data: bytes) -> None:
        state = self._by_channel.get(channel)
        if state is None or not state.ready.done():
            return
        if data.startswith(USER_MARK):
            user_id, kind, frame = decode_user_frame(data)
            for subscriber in tuple(state.subscribers):
                if getattr(subscriber, "user_id", None) == user_id:
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

    async def _ensure_started(self) -> None:
        if self._tasks:
            return
        async with self._start_lock:
            if self._tasks:
                return
            await self._connect()
            self._tasks = [
                asyncio.create_task(self._read_loop(), name="stream-hub-reader"),
                asyncio.create_task(self._tail_check_loop(), name="stream-hub-tail-check"),
            ]

    async def _connect(self) -> None:
        old, self._pubsub = self._pubsub, None
        if old is not None:
            with contextlib.suppress(RedisError, OSError):
                await old.aclose()  # give its connection back before taking another
        pubsub = self._redis.pubsub()
        channels = [hub_control_channel(), *(state.channel for state in self._streams.values())]
        try:
            await pubsub.subscribe(*channels)
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()
            raise
        self._pubsub = pubsub

    def _connected_pubsub(self) -> aioredis.client.PubSub:
        if self._pubsub is None:
            # Redis is down and the reader has not reconnected yet: fail like a lost connection.
            raise ConnectionError("the stream hub has no Redis connection")
        return self._pubsub

    async def _read_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                message = await self._connected_pubsub().get_message(ignore_subscribe_messages=True, timeout=1.0)
                backoff = 0.1
                if message is not None and message["type"] == "message":
                    await self._on_message(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                logger.warning("stream hub lost Redis (%s); reconnecting", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                with contextlib.suppress(RedisError, OSError):
                    await self._connect()
                    await self._repair_all()
            except Exception:
                logger.exception("stream hub failed to handle a message")
                await asyncio.sleep(0.05)  # never spin on a repeating failure

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
                if self._pubsub is not None:
                    with contextlib.suppress(RedisError, OSError):
                        await self._pubsub.unsubscribe(state.channel)

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


_hub: StreamHub | None = None


def get_hub() -> StreamHub:
    """The hub of this process (created on first use, inside the server's event loop)."""
    global _hub
    if _hub is None:
        _hub = StreamHub(
            redis_url=settings.CHORUS_REDIS_URL,
            tail_check_seconds=settings.CHORUS_HUB_TAIL_CHECK_SECONDS,
        )
    return _hub
