"""The stream WebSocket: replay from the event log, then live events, with no gap and no duplicate.

A connection keeps ``last_sent``, the sequence number of the last event it delivered. Live frames
from the node's hub go into a bounded buffer; the sender delivers them in order, skipping what it
already sent and filling any jump from the event log. When the buffer overflows (a slow client or
a burst) the connection stops buffering and reads the event log instead, so a client that falls
behind costs a bounded amount of memory and still gets every event.

Backpressure beyond that buffer: ASGI ``send`` never blocks (daphne queues every frame in Twisted's
write buffer), so the sender measures the socket's unflushed bytes (``realtime.transport``) and
stops writing while they exceed ``CHORUS_WS_MAX_WRITE_BUFFER``; a socket stalled for
``CHORUS_WS_STALL_SECONDS`` is closed with 4408 and its last delivered seq. A client may also pace
the server itself with credit frames (``realtime.protocol``). Inbound frames are rate limited per
connection.

Positions are ``(epoch, seq)``. A client resuming in an epoch the stream has left (``?epoch=``, a
``resync`` frame) gets a ``reset`` frame with its new position instead of a catch-up, and so does
every connected socket when its stream enters a new epoch (handed over by the hub).
"""

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from project.ratelimit import owner_bucket
from project.ratelimit.memory_backend import TokenBucket
from realtime import protocol
from realtime.auth import socket_user_id
from realtime.drain import drain
from realtime.extensions import FrameRejected, InboundContext, frame_admit, inbound_handlers, snapshot_providers
from realtime.hub import get_hub
from realtime.lookups import stream_ids
from realtime.nodes import get_heartbeat
from realtime.reads import read_quick, read_replay
from realtime.selectors import stream_event_frames, stream_positions
from realtime.stats import node_stats
from realtime.transport import (
    PEER_GONE_ERRORS,
    connection_trim,
    write_buffer_probe,
    write_mode,
    writes_through,
)

logger = logging.getLogger(__name__)

LOG_PAGE = 100  # rows per event-log read: bounds what one socket holds while catching up
# How often a socket held over its write-buffer limit checks whether the client has read.
STALL_POLL_SECONDS = 0.05
# How long a socket closed as too far behind keeps its unread data (and the error frame) on offer.
CLOSE_GRACE_SECONDS = 3.0

_fetch_frames = read_replay(stream_event_frames)
_fetch_positions = read_quick(stream_positions)


class BadRequest(FrameRejected):
    """A connection parameter or client frame the server cannot accept."""


def parse_after(raw: Any, *, name: str = "after") -> int:
    if isinstance(raw, bool) or not isinstance(raw, (int, str)):
        raise BadRequest(f"'{name}' must be a non-negative integer")
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"'{name}' must be a non-negative integer") from None
    if value < 0 or value > 2**62:
        raise BadRequest(f"'{name}' must be a non-negative integer")
    return value


class StreamConsumer(AsyncWebsocketConsumer):
    """One stream socket. While idle it holds no task, event, buffer or lock: only these slots.

    A node keeps thousands of idle sockets, so everything a socket needs only while it is sending
    (its sender task, its buffer, its snapshots, its send lock, its inbound bucket) is made on
    first use and, for the sender and the buffer, dropped again when done.
    """

    # Stream fan-out goes through the node's hub, not the channel layer: no per-socket layer
    # channel, no per-socket Redis reads.
    channel_layer_alias = "__none__"
    groups = ()  # no channel-layer groups (and no per-socket list for them)

    __slots__ = (
        "buffer", "closing", "counted", "credit", "direct_sends", "epoch", "inbound", "lagging", "last_sent", "live",
        "log_pending", "reset_pending", "resync_after", "rewake", "send_claims", "send_lock", "sender", "slug",
        "snapshots", "stall_poll_pending", "stalled_since", "stream_id", "strikes", "subscribed", "user_id",
        "write_buffered",
    )  # fmt: skip

    def __init__(self) -> None:
        self.slug = ""
        self.stream_id: int | None = None
        # Frames meant for one user (their saga reports) reach only their sockets.
        self.user_id: int | None = None
        self.epoch = 0  # the stream's epoch that last_sent belongs to
        self.last_sent = 0
        self.reset_pending: str | None = None  # a reset frame to send before any later event
        self.live = False  # connected: hello sent, the sender may run and the hub may write directly
        self.counted = False  # in node_stats.connections
        self.subscribed = False
        self.closing = False
        self.buffer: deque[tuple[int, str]] | None = None  # live frames waiting for the sender
        self.snapshots: dict[str, str] | None = None  # latest unsent snapshot per kind (coalesced)
        self.lagging = False
        self.log_pending = False  # events after last_sent must be read from the log before the buffer
        # A resync the sender still owes: events after this seq up to last_sent, sent before anything new.
        self.resync_after: int | None = None
        self.credit: int | None = None  # None until the client opts into flow control
        self.sender: asyncio.Task[None] | None = None  # runs only while there is something to send
        self.rewake = False  # more to send turned up while the sender was running
        self.send_lock: asyncio.Lock | None = None
        # Holders of send_lock plus those waiting for it: the hub writes directly only when it is 0
        # (an asyncio.Lock reads as free while a woken waiter has not yet taken it).
        self.send_claims = 0
        self.stalled_since: float | None = None
        self.stall_poll_pending = False
        self.write_buffered: Any = None
        self.direct_sends = False
        self.inbound: TokenBucket | None = None  # the ws_frames policy's bucket of this socket
        self.strikes = 0

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """The route's application: returns the consumer's own coroutine.

        Channels' version awaits it from a coroutine of its own, one more frame every idle socket
        holds for its whole life.
        """

        def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
            return cls(**initkwargs)(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        return app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels' AsyncConsumer.__call__ awaits every message as a task of its own through
        # asyncio.wait (two tasks and a future per idle socket), and runs disconnect() only on a
        # clean close. This loop is the same dispatch, and its ``finally`` is the one place where a
        # socket's state is given back, however the socket ended: a clean close, an exception in
        # connect() or receive(), a send to a client that has gone, or the server cancelling us.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except PEER_GONE_ERRORS:
            logger.debug("client of %s left while the server was answering it", self.slug)
        finally:
            self._release()

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale DB connections before every frame (a thread hop per frame); this
        # consumer touches the ORM only on the read threads of realtime.reads, which do that.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' version also hops to asgiref's thread to close DB connections this consumer
        # never opens there; the state is released by __call__.
        raise StopConsumer

    async def connect(self) -> None:
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        self.counted = True
        node_stats.connections += 1
        await self.accept()
        if drain.draining:
            await self._refuse_draining()
            return

        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            after = parse_after(query["after"][0]) if "after" in query else None
            # Optional: clients that saved a position without one resume in the current epoch.
            client_epoch = parse_after(query["epoch"][0], name="epoch") if "epoch" in query else None
            if "credit" in query:
                # Same as a credit frame sent at once, without the race against the first events.
                self.credit = min(parse_after(query["credit"][0], name="credit"), protocol.CREDIT_MAX)
        except BadRequest as exc:
            await self._refuse("bad_request", str(exc), protocol.CLOSE_BAD_REQUEST)
            return
        try:
            joined = await self._join(query, after, client_epoch)
        except PEER_GONE_ERRORS:
            raise  # the client left (uvicorn's ClientDisconnected is an OSError): nobody to tell
        except (DatabaseError, RedisError, OSError) as exc:
            logger.warning("a socket of %s could not join its stream: %s", self.slug, exc)
            message = "the server cannot reach its database or Redis; reconnect shortly"
            await self._refuse("unavailable", message, protocol.CLOSE_UNAVAILABLE)
            return
        if joined is None:
            return
        if drain.draining:  # the drain began while this socket was joining: it missed the roll call
            await self._refuse_draining()
            return
        epoch, head = joined
        # A reset the hub handed over while this socket joined is superseded by what is decided here.
        self.reset_pending = None
        self.epoch = epoch
        void = client_epoch is not None and client_epoch != epoch
        if void:
            after = None  # a position in another epoch: start at the head, after a reset frame
        # No ``after``: live events only. With ``after``: the sender replays the log first.
        self.last_sent = head if after is None else after
        self.lagging = after is not None and after < head
        await self.send(text_data=protocol.hello_frame(stream=self.slug, epoch=epoch, head=head))
        if void:
            node_stats.history_resets += 1
            await self.send(text_data=protocol.reset_frame(epoch=epoch, seq=head))
        viewers = get_heartbeat().presence(stream_id=self.stream_id)
        if viewers is not None:  # the next heartbeat sends the count that includes this socket
            await self.send(text_data=protocol.presence_frame(viewers=viewers))
        for kind, provider in snapshot_providers.items():
            snapshot = await provider(self.stream_id)  # type: ignore[arg-type]
            if snapshot is not None and not (self.snapshots and kind in self.snapshots):
                await self.send(text_data=snapshot)
        connection_trim(self.base_send, self.scope)
        self.write_buffered = write_buffer_probe(self.base_send)
        # Where a send reaches the socket at once, the hub writes to an idle socket directly; where
        # it only fills a buffer (Twisted untuned), the sender's batched writes are cheaper.
        self.direct_sends = writes_through(self.base_send) and self.write_buffered is not None
        self.live = True
        if self.lagging or self.buffer or self.snapshots:
            self._wake()

    async def _join(
        self, query: dict[str, list[str]], after: int | None, client_epoch: int | None
    ) -> tuple[int, int] | None:
        """Resolve the user and the stream, register with the hub; the ``(epoch, head)`` to start from,
        or None if refused."""
        self.user_id = await socket_user_id(query=query, headers=self.scope.get("headers", ()))
        self.scope["user_id"] = self.user_id  # what inbound handlers and the gateway read
        stream_id = await stream_ids.get(self.slug)
        if stream_id is None:
            await self._refuse("stream_not_found", f"no stream '{self.slug}'", protocol.CLOSE_STREAM_NOT_FOUND)
            return None
        self.stream_id = stream_id
        hub = get_hub()
        await hub.subscribe(stream_id=stream_id, subscriber=self)
        self.subscribed = True
        # The hub's last delivered event, read with no await since registering: every later event
        # reaches this socket through the hub. No query needed, unless the client is ahead of it
        # (an event this node has not seen yet); then the database decides.
        epoch, head = hub.position(stream_id=stream_id)
        if after is not None and after > head and client_epoch in (None, epoch):
            position = (await _fetch_positions(stream_ids=[stream_id])).get(stream_id)
            if position is not None and position.epoch == epoch:
                head = max(head, position.head)
            if after > head:
                message = f"'after' ({after}) is ahead of the stream ({head})"
                await self._refuse("bad_request", message, protocol.CLOSE_BAD_REQUEST)
                return None
            if hub.position(stream_id=stream_id)[0] != epoch:  # the stream moved on while we looked
                epoch, head = hub.position(stream_id=stream_id)
        return epoch, head

    async def _refuse(self, code: str, message: str, close_code: int) -> None:
        self.closing = True
        await self.send(text_data=protocol.error_frame(code=code, message=message))
        await self.close(code=close_code)

    async def _refuse_draining(self) -> None:
        self.closing = True
        await self.send(text_data=protocol.draining_frame(last_seq=None))
        await self.close(code=protocol.CLOSE_DRAINING, reason=protocol.DRAINING_REASON)

    async def leave(self) -> None:
        """The node is draining: send ``last_seq`` (every event up to it went out first), then close 4503.

        Waits for a send in progress, so the frame follows the last event written; nothing is
        written after it. Called by ``realtime.drain``; never raises.
        """
        if self.closing or not self.live:
            return
        self.closing = True  # no sender starts again, and the hub stops writing directly
        node_stats.drained_sockets += 1
        try:
            async with self._sending():
                await self.send(text_data=protocol.draining_frame(last_seq=self.last_sent, epoch=self.epoch))
                await self.close(code=protocol.CLOSE_DRAINING, reason=protocol.DRAINING_REASON)
        except PEER_GONE_ERRORS:
            pass
        except Exception:
            logger.exception("could not hand over a socket of %s", self.slug)

    def _release(self) -> None:
        """Give back what the socket holds in the node: its count, its hub subscription, its sender."""
        self.closing = True
        self.live = False
        if self.counted:
            self.counted = False
            node_stats.connections -= 1
        self._set_stalled(False)
        if self.subscribed:
            self.subscribed = False
            get_hub().unsubscribe(stream_id=self.stream_id, subscriber=self)  # type: ignore[arg-type]
        if self.sender is not None:
            self.sender.cancel()

    # --- outbound ------------------------------------------------------------------------------

    def offer(self, seq: int, frame: str) -> None:
        """Called by the hub for every live event; never blocks and never grows without bound."""
        if self.lagging:
            return
        if self.buffer is None:
            self.buffer = deque()
        if len(self.buffer) >= settings.CHORUS_WS_SEND_BUFFER:
            # Drop what is buffered: the sender re-reads the event log from last_sent instead.
            self.buffer = None
            self.lagging = True
            node_stats.log_fallbacks += 1
        else:
            self.buffer.append((seq, frame))
        self._wake()

    def can_send_now(self, seq: int) -> bool:
        """Idle, caught up, within its credit and with nothing unflushed: the hub may write directly.

        An empty write buffer also means the server is not pausing writes to this socket, so the
        send completes without waiting (uvicorn's send waits only while writing is paused).
        """
        if (
            not self.direct_sends
            or not self.live
            or self.closing
            or self.send_claims
            or self.lagging
            or self.log_pending
            or self.resync_after is not None
            or self.buffer
            or self.snapshots
            or self.reset_pending is not None
            or seq != self.last_sent + 1
            or (self.credit is not None and self.credit <= 0)
            or self.write_buffered() != 0  # type: ignore[misc]
        ):
            return False
        self._set_stalled(False)
        return True

    async def send_now(self, seq: int, frame: str) -> None:
        try:
            async with self._sending():  # unclaimed (can_send_now checked): taken without waiting
                if seq != self.last_sent + 1:  # the hub checked it with no await since; never drop
                    self.offer(seq, frame)
                    return
                write_mode.immediate = True
                try:
                    await self._send_event(seq, frame)
                finally:
                    write_mode.immediate = False
                node_stats.frames_direct += 1
        except PEER_GONE_ERRORS:
            logger.debug("client of %s left during a send", self.slug)
        except Exception:
            logger.exception("direct send failed for %s", self.slug)
            self.closing = True
            with contextlib.suppress(Exception):
                await self.close(code=1011)

    @contextlib.asynccontextmanager
    async def _sending(self) -> AsyncIterator[None]:
        """Hold the send lock, counted from the moment of asking (see ``send_claims``)."""
        self.send_claims += 1
        try:
            if self.send_lock is None:
                self.send_lock = asyncio.Lock()
            async with self.send_lock:
                yield
        finally:
            self.send_claims -= 1

    def offer_snapshot(self, kind: str, frame: str) -> None:
        """Keep only the latest snapshot of each kind: a slow client gets fewer, never stale, ones."""
        if self.snapshots is None:
            self.snapshots = {}
        elif kind in self.snapshots:
            node_stats.events_coalesced += 1
        self.snapshots[kind] = frame
        self._wake()

    def reset(self, epoch: int, seq: int) -> None:
        """Called by the hub when the stream enters a new epoch: what is buffered or being read from
        the log belongs to the old one; the client is told, then gets the events after ``seq``."""
        self.epoch = epoch
        self.last_sent = seq
        self.buffer = None
        self.lagging = False
        self.log_pending = False
        self.resync_after = None
        self.reset_pending = protocol.reset_frame(epoch=epoch, seq=seq)
        node_stats.history_resets += 1
        self._wake()

    def _wake(self) -> None:
        """Make sure a sender will look at what there is to send (started now if none is running)."""
        if self.sender is not None:
            self.rewake = True
        elif self.live and not self.closing:
            self.sender = asyncio.get_running_loop().create_task(self._send_pending())

    async def _send_pending(self) -> None:
        """The socket's sender: drains, then ends, so an idle socket has no task waiting."""
        try:
            while True:
                self.rewake = False
                async with self._sending():
                    await self._drain()
                if not self.rewake or self.closing:
                    return
        except asyncio.CancelledError:
            raise
        except PEER_GONE_ERRORS:
            # The client left while a frame was on its way; the consumer's loop cleans up.
            logger.debug("client of %s left during a send", self.slug)
        except Exception:
            logger.exception("stream sender failed for %s", self.slug)
            self.closing = True
            with contextlib.suppress(Exception):
                await self.close(code=1011)
        finally:
            self.sender = None

    def _set_stalled(self, stalled: bool) -> None:
        if stalled and self.stalled_since is None:
            self.stalled_since = time.monotonic()
            node_stats.stalled_sockets += 1
        elif not stalled and self.stalled_since is not None:
            self.stalled_since = None
            node_stats.stalled_sockets -= 1

    def _write_blocked(self) -> bool:
        """True while the client has not read what was already written (checked before every frame)."""
        if self.write_buffered is None or self.write_buffered() <= settings.CHORUS_WS_MAX_WRITE_BUFFER:
            self._set_stalled(False)
            return False
        self._set_stalled(True)
        if not self.stall_poll_pending:
            # Nothing tells us when the client reads: look again shortly (one timer at a time).
            self.stall_poll_pending = True
            asyncio.get_running_loop().call_later(STALL_POLL_SECONDS, self._stall_poll)
        return True

    def _stall_poll(self) -> None:
        self.stall_poll_pending = False
        self._wake()

    def _events_blocked(self) -> bool:
        return (self.credit is not None and self.credit <= 0) or self._write_blocked()

    async def _drain(self) -> None:
        """Send what the socket may send now: snapshots, then events in order, within the limits."""
        if self._write_blocked():
            await self._check_too_far_behind()
            return
        while self.snapshots:
            _kind, frame = self.snapshots.popitem()
            await self._send_frame(frame)
        while True:
            if self.reset_pending is not None:  # before any later event, and whatever the credit
                frame, self.reset_pending = self.reset_pending, None
                await self._send_frame(frame)
                continue
            if self._events_blocked():
                break
            if self.resync_after is not None:
                await self._send_resync_page()
                continue
            if self.lagging:
                # From here offer() buffers again; anything older comes from the log, duplicates
                # are dropped by sequence number.
                self.lagging = False
                self.buffer = None
                self.log_pending = True
            if self.log_pending:
                self.log_pending = await self._send_log_page()
                continue
            if not self.buffer:
                self.buffer = None  # an idle socket keeps no buffer
                break
            seq, frame = self.buffer[0]
            if seq <= self.last_sent:
                self.buffer.popleft()
                continue
            if seq > self.last_sent + 1:
                self.log_pending = True  # a jump: fill it from the log first
                continue
            self.buffer.popleft()
            await self._send_event(seq, frame)
        await self._check_too_far_behind()

    async def _send_log_page(self) -> bool:
        """Send one page of logged events after ``last_sent``; True if the log may hold more."""
        limit = LOG_PAGE if self.credit is None else max(1, min(LOG_PAGE, self.credit))
        epoch = self.epoch
        frames = await _fetch_frames(stream_id=self.stream_id, epoch=epoch, after=self.last_sent, limit=limit)
        for seq, frame in frames:
            if self._events_blocked() or self.epoch != epoch:
                return True  # a reset came in meanwhile: it goes first, then the log from there
            await self._send_event(seq, frame)
        return len(frames) == limit

    async def _send_resync_page(self) -> None:
        """Send one page of a resync: events after ``resync_after`` up to ``last_sent``, again.

        The frames go out under the same limits as events (credit, the write buffer), so a client
        that asks again and again without reading holds the server to one page and its buffer
        limit, and is closed as too far behind like any client that stops reading. Re-sent events
        spend no credit: a client drops what it already has, and would never grant that credit back.
        """
        cursor, epoch = self.resync_after, self.epoch
        assert cursor is not None
        frames = await _fetch_frames(
            stream_id=self.stream_id, epoch=epoch, after=cursor, upto=self.last_sent, limit=LOG_PAGE
        )
        for seq, frame in frames:
            if self.resync_after != cursor or self._events_blocked() or self.epoch != epoch:
                return  # a newer resync moved the range (a reset voided it), or the socket must wait
            await self._send_frame(frame)
            cursor = self.resync_after = seq
        if self.resync_after == cursor and (len(frames) < LOG_PAGE or cursor >= self.last_sent):
            self.resync_after = None

    async def _send_event(self, seq: int, frame: str) -> None:
        epoch = self.epoch
        await self._send_frame(frame)
        if self.epoch == epoch:  # else a reset came in during the send: its position stands
            self.last_sent = seq
        if self.credit is not None:
            self.credit -= 1

    async def _send_frame(self, frame: str) -> None:
        await self.send(text_data=frame)
        node_stats.frames_sent += 1

    async def _check_too_far_behind(self) -> None:
        """Close a client that cannot keep up, telling it where to resume from the event log."""
        if self.stalled_since is None or time.monotonic() - self.stalled_since <= settings.CHORUS_WS_STALL_SECONDS:
            return
        self.closing = True
        node_stats.slow_disconnects += 1
        logger.info("closing a socket of %s that stopped reading, at seq %s", self.slug, self.last_sent)
        await self.send(
            text_data=protocol.error_frame(
                code="too_far_behind",
                message=f"client stopped reading; reconnect with ?after={self.last_sent}&epoch={self.epoch}",
                last_seq=self.last_sent,
                epoch=self.epoch,
            )
        )
        # Let a client that comes back read the error frame before the close (and the server's abort
        # one close-handshake timeout later) discards what it has not read; nothing more is written.
        deadline = time.monotonic() + CLOSE_GRACE_SECONDS
        while self.write_buffered is not None and self.write_buffered() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(STALL_POLL_SECONDS)
        await self.close(code=protocol.CLOSE_TOO_FAR_BEHIND)

    # --- inbound -------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.inbound is None:
            self.inbound = owner_bucket("ws_frames")
        if not self.inbound.take():
            await self._rate_limited()
            return
        self.strikes = 0
        refusal = await frame_admit(self.scope)
        if refusal is not None:
            await self.send(text_data=protocol.error_frame(code=refusal.code, message=refusal.message))
            return
        try:
            frame = self._parse_frame(text_data, bytes_data)
            kind = frame.get("type")
            if kind == "credit":
                self._add_credit(frame.get("n"))
            elif kind == "resync":
                epoch = frame.get("epoch")
                self._resync(
                    parse_after(frame.get("after"), name="after"),
                    None if epoch is None else parse_after(epoch, name="epoch"),
                )
            elif kind == "ping":
                await self.send(text_data=protocol.PONG_FRAME)
            elif isinstance(kind, str) and kind in inbound_handlers and self.live:
                assert self.stream_id is not None  # live
                context = InboundContext(stream_id=self.stream_id, slug=self.slug, scope=self.scope)
                reply = await inbound_handlers[kind](context, frame)
                if reply is not None:
                    await self.send(text_data=reply)
            else:
                expected = ", ".join(repr(t) for t in ["resync", "ping", "credit", *inbound_handlers])
                raise BadRequest(f"unknown frame type {kind!r}; expected one of {expected}")
        except FrameRejected as exc:
            await self.send(text_data=protocol.error_frame(code="bad_frame", message=str(exc)))

    async def _rate_limited(self) -> None:
        """Drop a frame over the rate; say so once, and close a client that keeps going."""
        node_stats.rate_limited_frames += 1
        self.strikes += 1
        if self.strikes == 1:
            await self.send(
                text_data=protocol.error_frame(
                    code="rate_limited",
                    message=f"more than {settings.CHORUS_WS_INBOUND_RATE:g} frames per second; frames are dropped",
                )
            )
        elif self.strikes > settings.CHORUS_WS_INBOUND_STRIKES and not self.closing:
            self.closing = True
            node_stats.rate_limit_disconnects += 1
            await self.close(code=protocol.CLOSE_RATE_LIMITED)

    def _add_credit(self, raw: Any) -> None:
        if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= protocol.CREDIT_MAX:
            raise BadRequest(f"'n' must be an integer from 1 to {protocol.CREDIT_MAX}")
        self.credit = min((self.credit or 0) + raw, protocol.CREDIT_MAX)
        self._wake()

    def _parse_frame(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        if text_data is None:
            raise BadRequest("frames must be JSON text, not binary")
        if len(text_data) > settings.CHORUS_WS_MAX_INBOUND_FRAME:
            raise BadRequest(f"frame larger than {settings.CHORUS_WS_MAX_INBOUND_FRAME} characters")
        try:
            frame = json.loads(text_data)
        except ValueError:
            raise BadRequest("frame is not valid JSON") from None
        except RecursionError:  # 4 KiB of brackets nest deeper than the parser's recursion limit
            raise BadRequest("frame nests too deeply") from None
        if not isinstance(frame, dict):
            raise BadRequest("frame must be a JSON object")
        return frame

    def _resync(self, after: int, epoch: int | None) -> None:
        """Have the sender re-send the events after ``after`` that were already delivered.

        Only recorded here: the sender sends them before any newer event, within the socket's
        limits. Resyncs asked for before the last one is sent merge into one range (the lowest
        ``after``), so repeating the frame costs nothing more. ``after`` in another epoch than the
        socket's is answered by a reset to the socket's position instead.
        """
        if not self.live:
            return
        if epoch is not None and epoch != self.epoch:
            if self.reset_pending is None:  # else the reset on its way says the same
                self.reset_pending = protocol.reset_frame(epoch=self.epoch, seq=self.last_sent)
                self._wake()
            return
        if after >= self.last_sent:
            return
        self.resync_after = after if self.resync_after is None else min(self.resync_after, after)
        self._wake()
