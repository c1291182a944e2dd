"""One stream socket's outbound side: which frames go out, in what order, and when it must wait.

A socket keeps ``last_sent``, the sequence number of the last event it delivered. Live frames from
the node's hub go into a bounded buffer; the sender delivers them in order, skipping what it
already sent and filling any jump from the event log. When the buffer overflows (a slow client or
a burst) the socket stops buffering and reads the event log instead, so a client that falls
behind costs a bounded amount of memory and still gets every event.

Backpressure beyond that buffer: ASGI ``send`` never blocks (daphne queues every frame in Twisted's
write buffer), so the sender measures the socket's unflushed bytes (``realtime.transport``) and
stops writing while they exceed the limit; a socket stalled for too long is closed with 4408 and
its last delivered seq. A client may also pace the server itself with credit (``realtime.protocol``).

This is plain Python: it writes through a ``Wire`` and reads the log through a ``LogReader``, so
it runs (and is tested, ``tests/realtime/test_outbound.py``) without a server. The stream consumer
(``realtime/consumers.py``) is the ASGI side: it parses the connection and the client's frames and
hands this object to the hub as the socket's subscriber.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Protocol

from django.conf import settings

from realtime import protocol
from realtime.stats import NodeStats
from realtime.transport import PEER_GONE_ERRORS, WriteBufferProbe, text_frame_bytes, write_mode

logger = logging.getLogger(__name__)

# Most buffered events a sender writes in one go to a socket that takes encoded frames.
RAW_RUN = 64


class Wire(Protocol):
    """What the outbound side does to its socket."""

    async def send_text(self, frame: str) -> None:
        """Write one text frame (may raise one of ``PEER_GONE_ERRORS`` if the client has gone)."""

    async def close(self, code: int, reason: str | None = None) -> None:
        """Close the socket with ``code`` (and ``reason`` in the close frame)."""

    def write_encoded(self, data: bytes) -> bool:
        """Write frames encoded by ``realtime.transport.text_frame_bytes`` now, if the server lets
        this wire do that and is writing; False if nothing was written."""


class LogReader(Protocol):
    """Reads encoded event frames ``after < seq <= upto`` of a stream, stamped with ``epoch``."""

    def __call__(
        self, *, stream_id: int, epoch: int, after: int, upto: int | None = None, limit: int
    ) -> Awaitable[list[tuple[int, str]]]: ...


@dataclass(frozen=True)
class OutboundLimits:
    """The limits every socket of a node shares."""

    send_buffer: int  # live frames a socket buffers before it falls back to the event log
    max_write_buffer: int  # unflushed bytes over which the sender holds the socket
    stall_seconds: float  # held this long, the socket is closed as too far behind (4408)
    log_page: int = 100  # rows per event-log read: bounds what one socket holds while catching up
    stall_poll_seconds: float = 0.05  # how often a held socket checks whether the client has read
    close_grace_seconds: float = 3.0  # how long a closed-as-behind socket keeps its unread data on offer

    @classmethod
    def from_settings(cls) -> "OutboundLimits":
        return cls(
            send_buffer=settings.CHORUS_WS_SEND_BUFFER,
            max_write_buffer=settings.CHORUS_WS_MAX_WRITE_BUFFER,
            stall_seconds=settings.CHORUS_WS_STALL_SECONDS,
        )


class Outbound:
    """The outbound state of one socket. While idle it holds no task, event, buffer or lock.

    A node keeps thousands of idle sockets, so everything a socket needs only while it is sending
    (its sender task, its buffer, its snapshots, its send lock) is made on first use and, for the
    sender and the buffer, dropped again when done. The hub calls ``offer``, ``can_send_now``,
    ``send_now``, ``offer_snapshot``, ``reset`` and ``leave`` (``realtime.hub.Subscriber``).
    """

    __slots__ = (
        "buffer", "closing", "credit", "direct_sends", "epoch", "label", "lagging", "last_sent", "limits", "live",
        "log_pending", "raw_writes", "read_log", "reset_pending", "resync_after", "rewake", "send_claims", "send_lock",
        "sender", "snapshots", "stall_poll_pending", "stalled_since", "stats", "stream_id", "user_id", "wire",
        "write_buffered",
    )  # fmt: skip

    def __init__(self, wire: Wire, *, read_log: LogReader, stats: NodeStats, limits: OutboundLimits) -> None:
        self.wire = wire
        self.read_log = read_log
        self.stats = stats
        self.limits = limits
        self.label = ""  # the stream's slug, for the log
        self.stream_id = 0  # set before the socket subscribes to the hub
        # Frames meant for one user (their saga reports) reach only their sockets.
        self.user_id: int | None = None
        self.epoch = 0  # the stream's epoch that last_sent belongs to
        self.last_sent = 0
        self.reset_pending: str | None = None  # a reset frame to send before any later event
        self.live = False  # connected: hello sent, the sender may run and the hub may write directly
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
        self.write_buffered: WriteBufferProbe | None = None  # the socket's unflushed bytes, if measurable
        self.direct_sends = False
        # The wire takes event frames encoded once for every socket (``Wire.write_encoded``).
        self.raw_writes = False

    # --- the socket's life ---------------------------------------------------------------------

    def begin(self, *, epoch: int, last_sent: int, behind: bool) -> None:
        """Start from ``(epoch, last_sent)``; ``behind``: the log after it is sent before live events.

        Supersedes a reset the hub handed over while the socket was joining.
        """
        self.reset_pending = None
        self.epoch = epoch
        self.last_sent = last_sent
        self.lagging = behind

    def has_snapshot(self, kind: str) -> bool:
        """True if a snapshot of ``kind`` is waiting to be sent (a newer one than a provider's)."""
        return self.snapshots is not None and kind in self.snapshots

    def open(
        self,
        *,
        write_buffered: WriteBufferProbe | None,
        writes_through: bool,
        raw_writes: bool = False,
    ) -> None:
        """The client has its hello: from now on frames go out.

        ``write_buffered`` measures the socket's unflushed bytes (None where it cannot be measured);
        ``writes_through``: a send on an idle socket reaches it at once, so the hub may write to it
        directly (where a send only fills a buffer, the sender's batched writes are cheaper).
        ``raw_writes``: the server lets the wire take frames encoded once for all sockets
        (``write_encoded``), for the hub's direct writes and the sender's runs.
        """
        self.write_buffered = write_buffered
        self.raw_writes = raw_writes
        self.direct_sends = writes_through and write_buffered is not None
        self.live = True
        if self.lagging or self.buffer or self.snapshots:
            self._wake()

    def release(self) -> None:
        """The socket has ended: nothing more is sent, and its sender stops."""
        self.closing = True
        self.live = False
        self._set_stalled(False)
        if self.sender is not None:
            self.sender.cancel()

    async def leave(self) -> None:
        """The node is draining: send ``last_seq`` (every event up to it went out first), then close 4503.

        Waits for a send in progress, so the frame follows the last event written; nothing is
        written after it. Called by ``realtime.drain``; never raises.
        """
        if self.closing or not self.live:
            return
        self.closing = True  # no sender starts again, and the hub stops writing directly
        self.stats.drained_sockets += 1
        try:
            async with self._sending():
                await self.wire.send_text(protocol.draining_frame(last_seq=self.last_sent, epoch=self.epoch))
                await self.wire.close(protocol.CLOSE_DRAINING, protocol.DRAINING_REASON)
        except PEER_GONE_ERRORS:
            pass
        except Exception:
            logger.exception("could not hand over a socket of %s", self.label)

    # --- what the hub and the client hand over -------------------------------------------------

    def offer(self, seq: int, frame: str) -> None:
        """Called by the hub for every live event; never blocks and never grows without bound."""
        if self.lagging:
            return
        if self.buffer is None:
            self.buffer = deque()
        if len(self.buffer) >= self.limits.send_buffer:
            # Drop what is buffered: the sender re-reads the event log from last_sent instead.
            self.buffer = None
            self.lagging = True
            self.stats.log_fallbacks += 1
        else:
            self.buffer.append((seq, frame))
        self._wake()

    def can_send_now(self, seq: int) -> bool:
        """Idle, caught up, within its credit and with nothing unflushed: the hub may write directly.

        An empty write buffer also means the server is not pausing writes to this socket, so the
        send completes without waiting (uvicorn's send waits only while writing is paused).
        """
        probe = self.write_buffered
        if (
            not self.direct_sends
            or probe is None
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
            or probe() != 0
        ):
            return False
        self._set_stalled(False)
        return True

    def write_encoded(self, seq: int, data: bytes) -> bool:
        """Write the event (``data``: its frame from ``realtime.transport.text_frame_bytes``) at once,
        without a task switch; only after ``can_send_now``. False if nothing was written: the
        server is not writing right now, and the caller uses ``send_now``."""
        if not self.raw_writes or seq != self.last_sent + 1 or not self.wire.write_encoded(data):
            return False
        self.last_sent = seq
        if self.credit is not None:
            self.credit -= 1
        self.stats.frames_sent += 1
        self.stats.frames_direct += 1
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
                self.stats.frames_direct += 1
        except PEER_GONE_ERRORS:
            logger.debug("client of %s left during a send", self.label)
        except Exception:
            logger.exception("direct send failed for %s", self.label)
            self.closing = True
            with contextlib.suppress(Exception):
                await self.wire.close(1011)

    def offer_snapshot(self, kind: str, frame: str) -> None:
        """Keep only the latest snapshot of each kind: a slow client gets fewer, never stale, ones."""
        if self.snapshots is None:
            self.snapshots = {}
        elif kind in self.snapshots:
            self.stats.events_coalesced += 1
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
        self.stats.history_resets += 1
        self._wake()

    def add_credit(self, n: int) -> None:
        """The client may take ``n`` more events (``1 <= n <= CREDIT_MAX``, checked by the caller)."""
        self.credit = min((self.credit or 0) + n, protocol.CREDIT_MAX)
        self._wake()

    def resync(self, after: int, epoch: int | None) -> None:
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

    # --- the sender ----------------------------------------------------------------------------

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
            logger.debug("client of %s left during a send", self.label)
        except Exception:
            logger.exception("stream sender failed for %s", self.label)
            self.closing = True
            with contextlib.suppress(Exception):
                await self.wire.close(1011)
        finally:
            self.sender = None

    def _set_stalled(self, stalled: bool) -> None:
        if stalled and self.stalled_since is None:
            self.stalled_since = time.monotonic()
            self.stats.stalled_sockets += 1
        elif not stalled and self.stalled_since is not None:
            self.stalled_since = None
            self.stats.stalled_sockets -= 1

    def _write_blocked(self) -> bool:
        """True while the client has not read what was already written (checked before every frame)."""
        if self.write_buffered is None or self.write_buffered() <= self.limits.max_write_buffer:
            self._set_stalled(False)
            return False
        self._set_stalled(True)
        if not self.stall_poll_pending:
            # Nothing tells us when the client reads: look again shortly (one timer at a time).
            self.stall_poll_pending = True
            asyncio.get_running_loop().call_later(self.limits.stall_poll_seconds, self._stall_poll)
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
            if self.raw_writes and self._write_buffered_run():
                continue
            self.buffer.popleft()
            await self._send_event(seq, frame)
        await self._check_too_far_behind()

    def _write_buffered_run(self) -> bool:
        """Write the buffered events that follow ``last_sent`` (within the credit, at most
        ``RAW_RUN``) in one write of their encoded frames; False if the server is not writing now.

        A sender woken in a burst finds several frames: one system call for all of them instead of
        an ASGI send (and a write) each.
        """
        assert self.buffer is not None
        run: list[tuple[int, str]] = []
        expected = self.last_sent + 1
        room = RAW_RUN if self.credit is None else min(RAW_RUN, self.credit)
        for seq, frame in self.buffer:
            if seq != expected or len(run) >= room:
                break
            run.append((seq, frame))
            expected += 1
        if not run or not self.wire.write_encoded(b"".join(text_frame_bytes(frame) for _, frame in run)):
            return False
        for _ in run:
            self.buffer.popleft()
        self.last_sent = run[-1][0]
        if self.credit is not None:
            self.credit -= len(run)
        self.stats.frames_sent += len(run)
        return True

    async def _send_log_page(self) -> bool:
        """Send one page of logged events after ``last_sent``; True if the log may hold more."""
        page = self.limits.log_page
        limit = page if self.credit is None else max(1, min(page, self.credit))
        epoch = self.epoch
        frames = await self.read_log(stream_id=self.stream_id, epoch=epoch, after=self.last_sent, limit=limit)
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
        cursor, epoch, page = self.resync_after, self.epoch, self.limits.log_page
        assert cursor is not None
        frames = await self.read_log(
            stream_id=self.stream_id, epoch=epoch, after=cursor, upto=self.last_sent, limit=page
        )
        for seq, frame in frames:
            if self.resync_after != cursor or self._events_blocked() or self.epoch != epoch:
                return  # a newer resync moved the range (a reset voided it), or the socket must wait
            await self._send_frame(frame)
            cursor = self.resync_after = seq
        if self.resync_after == cursor and (len(frames) < page or cursor >= self.last_sent):
            self.resync_after = None

    async def _send_event(self, seq: int, frame: str) -> None:
        epoch = self.epoch
        await self._send_frame(frame)
        if self.epoch == epoch:  # else a reset came in during the send: its position stands
            self.last_sent = seq
        if self.credit is not None:
            self.credit -= 1

    async def _send_frame(self, frame: str) -> None:
        await self.wire.send_text(frame)
        self.stats.frames_sent += 1

    async def _check_too_far_behind(self) -> None:
        """Close a client that cannot keep up, telling it where to resume from the event log."""
        if self.stalled_since is None or time.monotonic() - self.stalled_since <= self.limits.stall_seconds:
            return
        self.closing = True
        self.stats.slow_disconnects += 1
        logger.info("closing a socket of %s that stopped reading, at seq %s", self.label, self.last_sent)
        await self.wire.send_text(
            protocol.error_frame(
                code="too_far_behind",
                message=f"client stopped reading; reconnect with ?after={self.last_sent}&epoch={self.epoch}",
                last_seq=self.last_sent,
                epoch=self.epoch,
            )
        )
        # Let a client that comes back read the error frame before the close (and the server's abort
        # one close-handshake timeout later) discards what it has not read; nothing more is written.
        deadline = time.monotonic() + self.limits.close_grace_seconds
        while self.write_buffered is not None and self.write_buffered() > 0 and time.monotonic() < deadline:
            await asyncio.sleep(self.limits.stall_poll_seconds)
        await self.wire.close(protocol.CLOSE_TOO_FAR_BEHIND)
