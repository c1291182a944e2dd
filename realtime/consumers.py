"""The stream WebSocket's ASGI side: the connection's parameters, joining the stream, the client's frames.

On connect a socket resolves its user and stream, registers with the node's hub and sends
``hello``; from then on what it sends is decided by its outbound side (``realtime.outbound``):
replay from the event log, then live events, with no gap and no duplicate, within its buffer,
credit and write-buffer limits. Inbound frames are rate limited per connection.

Positions are ``(epoch, seq)``. A client resuming in an epoch the stream has left (``?epoch=``, a
``resync`` frame) gets a ``reset`` frame with its new position instead of a catch-up, and so does
every connected socket when its stream enters a new epoch (handed over by the hub).
"""

import json
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from project.ratelimit import owner_bucket
from project.ratelimit.memory_backend import TokenBucket
from realtime import protocol
from realtime.auth import socket_user_id
from realtime.extensions import FrameRejected, InboundContext, frame_admit, inbound_handlers, snapshot_providers
from realtime.lookups import stream_ids
from realtime.node import node
from realtime.outbound import Outbound
from realtime.reads import read_quick, read_replay
from realtime.selectors import stream_event_frames, stream_positions
from realtime.transport import (
    PEER_GONE_ERRORS,
    connection_trim,
    raw_frame_write,
    raw_frames_supported,
    write_buffer_probe,
    writes_through,
)

logger = logging.getLogger(__name__)

_fetch_frames = read_replay(stream_event_frames)
_fetch_positions = read_quick(stream_positions)

Send = Any  # the server's ASGI ``send`` callable


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


def parse_credit(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= protocol.CREDIT_MAX:
        raise BadRequest(f"'n' must be an integer from 1 to {protocol.CREDIT_MAX}")
    return raw


class AsgiWire:
    """An ``Outbound``'s wire: its frames and its close as ASGI messages on the server's ``send``
    (the messages Channels' ``send(text_data=...)`` and ``close(code, reason)`` make)."""

    __slots__ = ("send",)

    def __init__(self, send: Send) -> None:
        self.send = send

    async def send_text(self, frame: str) -> None:
        await self.send({"type": "websocket.send", "text": frame})

    async def close(self, code: int, reason: str | None = None) -> None:
        message: dict[str, Any] = {"type": "websocket.close", "code": code}
        if reason:
            message["reason"] = reason
        await self.send(message)

    def write_encoded(self, data: bytes) -> bool:
        return raw_frame_write(self.send, data)


class StreamConsumer(AsyncWebsocketConsumer):
    """One stream socket: these slots and its ``Outbound``; while idle, no task, event, lock or buffer."""

    # Stream fan-out goes through the node's hub, not the channel layer: no per-socket layer
    # channel, no per-socket Redis reads.
    channel_layer_alias = "__none__"
    groups = ()  # no channel-layer groups (and no per-socket list for them)

    __slots__ = (
        "base_send", "channel_layer", "counted", "inbound", "outbound", "scope", "slug", "strikes", "subscribed",
    )  # fmt: skip

    def __init__(self, scope: dict[str, Any], send: Send) -> None:
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        self.slug = ""
        self.counted = False  # in node.stats.connections
        self.subscribed = False  # registered with the hub
        self.inbound: TokenBucket | None = None  # the ws_frames policy's bucket of this socket, made on first use
        self.strikes = 0
        # What the socket sends, and when (also the socket as the hub sees it: its subscriber).
        self.outbound = Outbound(AsgiWire(send), read_log=_fetch_frames, stats=node.stats, limits=node.outbound_limits)

    @classmethod
    def as_asgi(cls, **initkwargs: Any) -> Any:
        """The route's application: returns the consumer's own coroutine.

        Channels' version awaits it from a coroutine of its own, one more frame every idle socket
        holds for its whole life.
        """

        def app(scope: dict[str, Any], receive: Any, send: Send) -> Any:
            return cls(scope, send, **initkwargs)(scope, receive, send)

        app.consumer_class = cls  # type: ignore[attr-defined]
        app.consumer_initkwargs = initkwargs  # type: ignore[attr-defined]
        return app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        # Channels' AsyncConsumer.__call__ awaits every message as a task of its own through
        # asyncio.wait (two tasks and a future per idle socket), and runs disconnect() only on a
        # clean close. This loop is the same dispatch, and its ``finally`` is the one place where a
        # socket's state is given back, however the socket ended: a clean close, an exception in
        # connect() or receive(), a send to a client that has gone, or the server cancelling us.
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
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' version also hops to asgiref's thread to close DB connections this consumer
        # never opens there; the state is released by __call__.
        raise StopConsumer

    async def connect(self) -> None:
        out = self.outbound
        self.slug = out.label = self.scope["url_route"]["kwargs"]["slug"]
        self.counted = True
        node.stats.connections += 1
        await self.accept()
        if node.drain.draining:
            await self._refuse_draining()
            return

        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            after = parse_after(query["after"][0]) if "after" in query else None
            # Optional: clients that saved a position without one resume in the current epoch.
            client_epoch = parse_after(query["epoch"][0], name="epoch") if "epoch" in query else None
            if "credit" in query:
                # Same as a credit frame sent at once, without the race against the first events.
                out.credit = min(parse_after(query["credit"][0], name="credit"), protocol.CREDIT_MAX)
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
        if node.drain.draining:  # the drain began while this socket was joining: it missed the roll call
            await self._refuse_draining()
            return
        epoch, head = joined
        void = client_epoch is not None and client_epoch != epoch
        if void:
            after = None  # a position in another epoch: start at the head, after a reset frame
        # No ``after``: live events only. With ``after``: the sender replays the log first.
        out.begin(epoch=epoch, last_sent=head if after is None else after, behind=after is not None and after < head)
        await self.send(text_data=protocol.hello_frame(stream=self.slug, epoch=epoch, head=head))
        if void:
            node.stats.history_resets += 1
            await self.send(text_data=protocol.reset_frame(epoch=epoch, seq=head))
        viewers = node.heartbeat.presence(stream_id=out.stream_id)
        if viewers is not None:  # the next heartbeat sends the count that includes this socket
            await self.send(text_data=protocol.presence_frame(viewers=viewers))
        for kind, provider in snapshot_providers.items():
            snapshot = await provider(out.stream_id)
            if snapshot is not None and not out.has_snapshot(kind):
                await self.send(text_data=snapshot)
        connection_trim(self.base_send, self.scope)
        out.open(
            write_buffered=write_buffer_probe(self.base_send),
            writes_through=writes_through(self.base_send),
            raw_writes=raw_frames_supported(self.base_send),
        )

    async def _join(
        self, query: dict[str, list[str]], after: int | None, client_epoch: int | None
    ) -> tuple[int, int] | None:
        """Resolve the user and the stream, register with the hub; the ``(epoch, head)`` to start from,
        or None if refused."""
        out = self.outbound
        out.user_id = await socket_user_id(query=query, headers=self.scope.get("headers", ()))
        self.scope["user_id"] = out.user_id  # what inbound handlers and the gateway read
        stream_id = await stream_ids.get(self.slug)
        if stream_id is None:
            await self._refuse("stream_not_found", f"no stream '{self.slug}'", protocol.CLOSE_STREAM_NOT_FOUND)
            return None
        out.stream_id = stream_id
        hub = node.hub
        await hub.subscribe(stream_id=stream_id, subscriber=out)
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
        self.outbound.closing = True
        await self.send(text_data=protocol.error_frame(code=code, message=message))
        await self.close(code=close_code)

    async def _refuse_draining(self) -> None:
        self.outbound.closing = True
        await self.send(text_data=protocol.draining_frame(last_seq=None))
        await self.close(code=protocol.CLOSE_DRAINING, reason=protocol.DRAINING_REASON)

    def _release(self) -> None:
        """Give back what the socket holds in the node: its count, its hub subscription, its sender."""
        self.outbound.release()
        if self.counted:
            self.counted = False
            node.stats.connections -= 1
        if self.subscribed:
            self.subscribed = False
            node.hub.unsubscribe(stream_id=self.outbound.stream_id, subscriber=self.outbound)

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
                self.outbound.add_credit(parse_credit(frame.get("n")))
            elif kind == "resync":
                epoch = frame.get("epoch")
                self.outbound.resync(
                    parse_after(frame.get("after"), name="after"),
                    None if epoch is None else parse_after(epoch, name="epoch"),
                )
            elif kind == "ping":
                await self.send(text_data=protocol.PONG_FRAME)
            elif isinstance(kind, str) and kind in inbound_handlers and self.outbound.live:
                context = InboundContext(stream_id=self.outbound.stream_id, slug=self.slug, scope=self.scope)
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
        node.stats.rate_limited_frames += 1
        self.strikes += 1
        if self.strikes == 1:
            await self.send(
                text_data=protocol.error_frame(
                    code="rate_limited",
                    message=f"more than {settings.CHORUS_WS_INBOUND_RATE:g} frames per second; frames are dropped",
                )
            )
        elif self.strikes > settings.CHORUS_WS_INBOUND_STRIKES and not self.outbound.closing:
            self.outbound.closing = True
            node.stats.rate_limit_disconnects += 1
            await self.close(code=protocol.CLOSE_RATE_LIMITED)

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
