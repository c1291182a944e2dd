"""The stream WebSocket: replay from the event log, then live events, with no gap and no duplicate.

A connection keeps ``last_sent``, the sequence number of the last event it delivered. Live frames
from the node's hub go into a bounded buffer; the sender delivers them in order, skipping what it
already sent and filling any jump from the event log. When the buffer overflows (a slow client or
a burst) the connection stops buffering and reads the event log instead, so a client that falls
behind costs a bounded amount of memory and still gets every event.
"""

import asyncio
import json
import logging
from collections import deque
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from gateway.services import ws_frame_admit
from realtime import protocol
from realtime.extensions import FrameRejected, InboundContext, inbound_handlers, snapshot_providers
from realtime.hub import get_hub
from realtime.selectors import stream_event_frames, stream_get, stream_heads

logger = logging.getLogger(__name__)

LOG_PAGE = 500

_get_stream = database_sync_to_async(stream_get)
_fetch_frames = database_sync_to_async(stream_event_frames)
_fetch_heads = database_sync_to_async(stream_heads)


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
    # Stream fan-out goes through the node's hub, not the channel layer: no per-socket layer
    # channel, no per-socket Redis reads.
    channel_layer_alias = "__none__"

    stream_id: int
    slug: str
    last_sent: int

    async def dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale DB connections before every frame (a thread hop per frame); this
        # consumer touches the ORM only through database_sync_to_async, which already does that.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        self.slug = self.scope["url_route"]["kwargs"]["slug"]
        # Set by the socket authentication middleware when there is one; frames meant for one user
        # (their saga reports) reach only their sockets.
        self.user_id: int | None = self.scope.get("user_id")
        self.buffer: deque[tuple[int, str]] = deque()
        self.snapshots: dict[str, str] = {}  # latest unsent snapshot per kind (coalesced)
        self.max_buffer = settings.CHORUS_WS_SEND_BUFFER
        self.lagging = False
        self.wakeup = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.sender: asyncio.Task[None] | None = None
        self.subscribed = False
        await self.accept()

        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            after = parse_after(query["after"][0]) if "after" in query else None
        except BadRequest as exc:
            await self._refuse("bad_request", str(exc), protocol.CLOSE_BAD_REQUEST)
            return
        stream = await _get_stream(slug=self.slug)
        if stream is None:
            await self._refuse("stream_not_found", f"no stream '{self.slug}'", protocol.CLOSE_STREAM_NOT_FOUND)
            return
        self.stream_id = stream.id

        await get_hub().subscribe(stream_id=self.stream_id, subscriber=self)
        self.subscribed = True
        head = (await _fetch_heads(stream_ids=[self.stream_id])).get(self.stream_id, 0)
        if after is not None and after > head:
            await self._refuse(
                "bad_request", f"'after' ({after}) is ahead of the stream ({head})", protocol.CLOSE_BAD_REQUEST
            )
            return
        # No ``after``: live events only. With ``after``: the sender replays the log first.
        self.last_sent = head if after is None else after
        self.lagging = after is not None and after < head
        await self.send(text_data=protocol.hello_frame(stream=self.slug, head=head))
        for kind, provider in snapshot_providers.items():
            snapshot = await provider(self.stream_id)
            if snapshot is not None and kind not in self.snapshots:
                await self.send(text_data=snapshot)
        self.sender = asyncio.create_task(self._sender_loop())
        self.wakeup.set()

    async def _refuse(self, code: str, message: str, close_code: int) -> None:
        await self.send(text_data=protocol.error_frame(code=code, message=message))
        await self.close(code=close_code)

    async def disconnect(self, code: int) -> None:
        if self.subscribed:
            get_hub().unsubscribe(stream_id=self.stream_id, subscriber=self)
        if self.sender is not None:
            self.sender.cancel()

    # --- outbound ------------------------------------------------------------------------------

    def offer(self, seq: int, frame: str) -> None:
        """Called by the hub for every live event; never blocks and never grows without bound."""
        if self.lagging:
            return
        if len(self.buffer) >= self.max_buffer:
            # Drop what is buffered: the sender re-reads the event log from last_sent instead.
            self.buffer.clear()
            self.lagging = True
        else:
            self.buffer.append((seq, frame))
        self.wakeup.set()

    def offer_snapshot(self, kind: str, frame: str) -> None:
        """Keep only the latest snapshot of each kind: a slow client gets fewer, never stale, ones."""
        self.snapshots[kind] = frame
        self.wakeup.set()

    async def _sender_loop(self) -> None:
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                async with self.send_lock:
                    if self.lagging:
                        self.buffer.clear()
                        self.lagging = False
                        await self._send_from_log()
                    while self.buffer:
                        seq, frame = self.buffer.popleft()
                        if seq <= self.last_sent:
                            continue
                        if seq > self.last_sent + 1:
                            await self._send_from_log(upto=seq - 1)
                        await self.send(text_data=frame)
                        self.last_sent = seq
                    while self.snapshots:
                        _kind, frame = self.snapshots.popitem()
                        await self.send(text_data=frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("stream sender failed for %s", self.slug)
            await self.close(code=1011)

    async def _send_from_log(self, *, upto: int | None = None) -> None:
        """Send every logged event after ``last_sent`` (up to ``upto``), page by page."""
        while True:
            frames = await _fetch_frames(stream_id=self.stream_id, after=self.last_sent, upto=upto, limit=LOG_PAGE)
            for seq, frame in frames:
                await self.send(text_data=frame)
                self.last_sent = seq
            if len(frames) < LOG_PAGE:
                return

    # --- inbound -------------------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        refusal = await ws_frame_admit(scope=self.scope)
        if refusal is not None:
            await self.send(text_data=protocol.error_frame(code=refusal.code, message=refusal.message))
            return
        try:
            frame = self._parse_frame(text_data, bytes_data)
            kind = frame.get("type")
            if kind == "resync":
                await self._resync(parse_after(frame.get("after"), name="after"))
            elif kind == "ping":
                await self.send(text_data=protocol.PONG_FRAME)
            elif isinstance(kind, str) and kind in inbound_handlers and hasattr(self, "stream_id"):
                context = InboundContext(stream_id=self.stream_id, slug=self.slug, scope=self.scope)
                reply = await inbound_handlers[kind](context, frame)
                if reply is not None:
                    await self.send(text_data=reply)
            else:
                expected = ", ".join(repr(t) for t in ["resync", "ping", *inbound_handlers])
                raise BadRequest(f"unknown frame type {kind!r}; expected one of {expected}")
        except FrameRejected as exc:
            await self.send(text_data=protocol.error_frame(code="bad_frame", message=str(exc)))

    def _parse_frame(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        if text_data is None:
            raise BadRequest("frames must be JSON text, not binary")
        if len(text_data) > settings.CHORUS_WS_MAX_INBOUND_FRAME:
            raise BadRequest(f"frame larger than {settings.CHORUS_WS_MAX_INBOUND_FRAME} characters")
        try:
            frame = json.loads(text_data)
        except ValueError:
            raise BadRequest("frame is not valid JSON") from None
        if not isinstance(frame, dict):
            raise BadRequest("frame must be a JSON object")
        return frame

    async def _resync(self, after: int) -> None:
        """Re-send the range the client says it missed: events after ``after`` already delivered."""
        if not hasattr(self, "last_sent"):
            return
        async with self.send_lock:
            cursor = after
            while cursor < self.last_sent:
                frames = await _fetch_frames(
                    stream_id=self.stream_id, after=cursor, upto=self.last_sent, limit=LOG_PAGE
                )
                if not frames:
                    return
                for seq, frame in frames:
                    await self.send(text_data=frame)
                    cursor = seq
