"""A socket's outbound side on its own: plain asyncio, a wire that records, a log in a dict; no server.

The same rules the integration tests check through real sockets (``test_backpressure.py``,
``test_direct_writes.py``, ``test_drain.py``), here where each can be set up exactly.
"""

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from realtime import protocol
from realtime.outbound import Outbound, OutboundLimits
from realtime.stats import NodeStats

LIMITS = OutboundLimits(
    send_buffer=4, max_write_buffer=100, stall_seconds=0.3, log_page=3, stall_poll_seconds=0.01, close_grace_seconds=0.1
)


def event(seq: int) -> str:
    return protocol.event_frame(seq=seq, epoch=1, event_id=f"e{seq}", event_type="comment.created", payload={})


class Wire:
    """Records what the socket was sent; ``unread`` stands for bytes the client has not taken yet."""

    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.closed: tuple[int, str | None] | None = None
        self.unread = 0
        self.gate: asyncio.Event | None = None  # set: a send waits until it opens
        self.encoded: list[bytes] = []
        self.encoded_refused = False

    async def send_text(self, frame: str) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.frames.append(json.loads(frame))

    async def close(self, code: int, reason: str | None = None) -> None:
        self.closed = (code, reason)

    def write_encoded(self, data: bytes) -> bool:
        """Frames encoded once: taken (recorded in ``encoded``) unless ``encoded_refused``."""
        if self.encoded_refused:
            return False
        self.encoded.append(data)
        return True

    def seqs(self) -> list[int]:
        return [frame["seq"] for frame in self.frames if frame["type"] == "event"]

    def types(self) -> list[str]:
        return [frame["type"] for frame in self.frames]


class Log:
    """The stream's event log: every event up to ``head``."""

    def __init__(self, head: int) -> None:
        self.head = head
        self.reads = 0

    async def __call__(
        self, *, stream_id: int, epoch: int, after: int, upto: int | None = None, limit: int
    ) -> list[tuple[int, str]]:
        self.reads += 1
        await asyncio.sleep(0)
        last = self.head if upto is None else min(upto, self.head)
        return [(seq, event(seq)) for seq in range(after + 1, last + 1)][:limit]


def socket(*, head: int = 0, limits: OutboundLimits = LIMITS) -> tuple[Outbound, Wire, Log, NodeStats]:
    wire, log, stats = Wire(), Log(head), NodeStats()
    out = Outbound(wire, read_log=log, stats=stats, limits=limits)
    out.stream_id = 7
    return out, wire, log, stats


def open_at(out: Outbound, wire: Wire, *, last_sent: int = 0, behind: bool = False, direct: bool = True) -> None:
    out.begin(epoch=1, last_sent=last_sent, behind=behind)
    out.open(write_buffered=lambda: wire.unread, writes_through=direct)


async def until(condition: Callable[[], object], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.005)


async def idle(out: Outbound) -> None:
    """Wait until the socket's sender has nothing left to do."""
    await until(lambda: out.sender is None)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout=10))


def test_live_events_go_out_once_and_in_order():
    """Buffered events are sent in sequence order; a repeat is dropped; each is counted."""

    async def scenario() -> None:
        out, wire, _log, stats = socket(head=0)
        open_at(out, wire)
        for seq in (1, 2, 2, 3):
            out.offer(seq, event(seq))
        await idle(out)
        assert wire.seqs() == [1, 2, 3]
        assert out.last_sent == 3 and out.buffer is None  # an idle socket keeps no buffer
        assert stats.frames_sent == 3

    run(scenario)


def test_a_jump_in_live_events_is_filled_from_the_log():
    """Event 5 after 2: 3 and 4 come from the event log first."""

    async def scenario() -> None:
        out, wire, log, _stats = socket(head=5)
        open_at(out, wire, last_sent=2)
        out.offer(5, event(5))
        await idle(out)
        assert wire.seqs() == [3, 4, 5]
        assert log.reads >= 1

    run(scenario)


def test_an_overflowing_buffer_is_dropped_and_the_log_read_instead():
    """More live events than the buffer holds: the buffer goes, the log is read from last_sent, nothing lost."""

    async def scenario() -> None:
        out, wire, log, stats = socket(head=10)
        out.begin(epoch=1, last_sent=0, behind=False)  # joined, not yet open: offers only buffer
        for seq in range(1, 11):
            out.offer(seq, event(seq))
        assert out.lagging and out.buffer is None
        assert stats.log_fallbacks == 1
        out.open(write_buffered=lambda: wire.unread, writes_through=True)
        await idle(out)
        assert wire.seqs() == list(range(1, 11))
        assert log.reads >= 4  # pages of log_page (3)

    run(scenario)


def test_a_socket_that_joins_behind_replays_the_log_before_live_events():
    """begin(behind=True): the log after last_sent goes out before what the hub offers."""

    async def scenario() -> None:
        out, wire, log, _stats = socket(head=6)
        out.begin(epoch=1, last_sent=2, behind=True)
        out.offer(7, event(7))  # live, while it joins: dropped, the log covers it
        log.head = 7
        out.open(write_buffered=lambda: wire.unread, writes_through=True)
        await idle(out)
        assert wire.seqs() == [3, 4, 5, 6, 7]

    run(scenario)


def test_credit_holds_events_until_the_client_grants_more():
    """With credit 2 only two events go; snapshots and resets are not held; more credit releases the rest."""

    async def scenario() -> None:
        out, wire, _log, _stats = socket(head=5, limits=replace(LIMITS, send_buffer=10))
        out.credit = 2
        open_at(out, wire)
        for seq in range(1, 6):
            out.offer(seq, event(seq))
        await idle(out)
        assert wire.seqs() == [1, 2]
        assert not out.can_send_now(3)  # no direct write past the credit either
        out.offer_snapshot("reactions", json.dumps({"type": "reactions", "counts": {}}))
        await idle(out)
        assert wire.types()[-1] == "reactions"
        out.add_credit(2)
        await idle(out)
        assert wire.seqs() == [1, 2, 3, 4]
        assert out.credit == 0
        out.add_credit(10)
        await idle(out)
        assert wire.seqs() == [1, 2, 3, 4, 5]
        assert out.credit == 9

    run(scenario)


def test_snapshots_keep_only_the_latest_of_each_kind():
    """Two snapshots of one kind before the socket sends: only the newer goes out, the other is counted."""

    async def scenario() -> None:
        out, wire, _log, stats = socket()
        out.begin(epoch=1, last_sent=0, behind=False)
        out.offer_snapshot("presence", protocol.presence_frame(viewers=1))
        out.offer_snapshot("presence", protocol.presence_frame(viewers=2))
        assert out.has_snapshot("presence")
        open_at(out, wire)
        await idle(out)
        assert wire.frames == [{"type": "presence", "viewers": 2}]
        assert stats.events_coalesced == 1

    run(scenario)


def test_a_full_write_buffer_holds_the_socket_until_the_client_reads():
    """Unread bytes over the limit: nothing more is written, the socket counts as stalled; read, it resumes."""

    async def scenario() -> None:
        out, wire, _log, stats = socket(head=3)
        open_at(out, wire)
        wire.unread = LIMITS.max_write_buffer + 1
        out.offer(1, event(1))
        await until(lambda: stats.stalled_sockets == 1)
        assert wire.seqs() == [] and not out.can_send_now(1)
        wire.unread = 0  # the client reads; the stall poll notices
        await until(lambda: wire.seqs() == [1])
        assert stats.stalled_sockets == 0 and wire.closed is None

    run(scenario)


def test_a_socket_stalled_too_long_is_told_where_to_resume_and_closed_4408():
    """Held past stall_seconds: an error frame with last_seq and epoch, then close 4408; nothing after it."""

    async def scenario() -> None:
        out, wire, _log, stats = socket(head=3)
        open_at(out, wire)
        out.offer(1, event(1))
        await idle(out)
        wire.unread = LIMITS.max_write_buffer + 1  # the client stops reading
        out.offer(2, event(2))
        await until(lambda: wire.closed is not None, timeout=LIMITS.stall_seconds + 2)
        assert wire.closed == (protocol.CLOSE_TOO_FAR_BEHIND, None)
        error = wire.frames[-1]
        assert error["type"] == "error" and error["code"] == "too_far_behind"
        assert (error["last_seq"], error["epoch"]) == (1, 1)
        assert stats.slow_disconnects == 1 and out.closing
        await idle(out)
        out.offer(3, event(3))
        assert out.sender is None and wire.seqs() == [1]

    run(scenario)


def test_the_hub_writes_directly_only_to_an_idle_caught_up_socket():
    """can_send_now: the next event, nothing queued or unread, within credit, a server that writes through."""

    async def scenario() -> None:
        out, wire, _log, stats = socket(head=2)
        assert not out.can_send_now(1)  # not open yet
        open_at(out, wire)
        assert out.can_send_now(1) and not out.can_send_now(2)
        await out.send_now(1, event(1))
        assert wire.seqs() == [1] and stats.frames_direct == 1 and out.last_sent == 1
        wire.unread = 1
        assert not out.can_send_now(2)  # something unflushed: the sender batches instead
        wire.unread = 0
        out.credit = 0
        assert not out.can_send_now(2)
        buffered, other_wire, _log, _stats = socket(head=2)
        open_at(buffered, other_wire, direct=False)
        assert not buffered.can_send_now(1)  # a server whose send only fills a buffer (daphne untuned)

    run(scenario)


def test_a_reset_goes_first_and_voids_what_was_queued():
    """The stream entered epoch 2 at seq 10: the old epoch's buffer is dropped, reset frame, then events after 10."""

    async def scenario() -> None:
        out, wire, _log, stats = socket()
        out.credit = 0  # events are held, so the buffer is still there when the reset comes
        open_at(out, wire)
        out.offer(1, event(1))
        await idle(out)
        out.reset(2, 10)
        out.offer(11, event(11))
        out.add_credit(5)
        await idle(out)
        assert wire.types() == ["reset", "event"]
        assert wire.frames[0] == {"type": "reset", "epoch": 2, "seq": 10}
        assert wire.seqs() == [11] and (out.epoch, out.last_sent) == (2, 11)
        assert stats.history_resets == 1

    run(scenario)


def test_resync_resends_delivered_events_under_the_credit_without_spending_it():
    """resync after 1 with 4 delivered: 2, 3, 4 again before anything newer, once the client has credit,
    which they do not spend; a resync in another epoch is answered by a reset to the socket's position."""

    async def scenario() -> None:
        out, wire, _log, _stats = socket(head=5)
        out.credit = 4
        open_at(out, wire)
        for seq in range(1, 5):
            out.offer(seq, event(seq))
        await idle(out)
        out.offer(5, event(5))
        out.resync(1, 1)
        out.resync(2, None)  # merges into the range already asked for
        await idle(out)
        assert wire.seqs() == [1, 2, 3, 4]  # no credit: held like events
        out.add_credit(1)
        await idle(out)
        assert wire.seqs() == [1, 2, 3, 4, 2, 3, 4, 5]
        assert out.credit == 0 and out.resync_after is None
        out.resync(0, 9)
        await idle(out)
        assert wire.frames[-1] == {"type": "reset", "epoch": 1, "seq": 5}

    run(scenario)


def test_leave_sends_last_seq_after_the_send_in_progress_then_closes_4503():
    """Draining: a send under way finishes first; then the draining frame with last_seq, close 4503; nothing more."""

    async def scenario() -> None:
        out, wire, _log, stats = socket()
        open_at(out, wire)
        wire.gate = asyncio.Event()
        out.offer(1, event(1))  # the sender starts and waits inside the send
        await until(lambda: out.send_claims == 1)
        leaving = asyncio.create_task(out.leave())
        await asyncio.sleep(0.01)
        assert wire.closed is None  # leave waits for the send lock
        wire.gate.set()
        await leaving
        assert wire.types() == ["event", "draining"]
        assert wire.frames[-1]["last_seq"] == 1 and wire.frames[-1]["epoch"] == 1
        assert wire.closed == (protocol.CLOSE_DRAINING, protocol.DRAINING_REASON)
        assert stats.drained_sockets == 1
        out.offer(2, event(2))
        assert out.sender is None and not out.can_send_now(2)
        await out.leave()  # a second call does nothing
        assert stats.drained_sockets == 1

    run(scenario)


def test_release_stops_the_sender_and_the_stall_count():
    """The socket ended while held: its sender is cancelled and it no longer counts as stalled."""

    async def scenario() -> None:
        out, wire, _log, stats = socket(head=1)
        open_at(out, wire)
        wire.unread = LIMITS.max_write_buffer + 1
        out.offer(1, event(1))
        await until(lambda: stats.stalled_sockets == 1)
        out.release()
        assert stats.stalled_sockets == 0 and out.closing and not out.live
        await idle(out)

    run(scenario)


def test_an_event_encoded_once_is_written_without_a_send_where_the_server_allows_it():
    """write_encoded: the bytes go to the wire's write_encoded and count as the event sent; where the
    server does not take encoded frames, or is not writing right now, nothing is written and the hub sends."""
    from realtime.transport import text_frame_bytes

    async def scenario() -> None:
        out, wire, _log, stats = socket(head=3)
        open_at(out, wire)
        assert not out.write_encoded(1, text_frame_bytes(event(1)))  # not opened for encoded frames (daphne)
        assert out.last_sent == 0 and stats.frames_sent == 0

        out.open(write_buffered=lambda: wire.unread, writes_through=True, raw_writes=True)
        out.credit = 5
        assert out.can_send_now(1) and out.write_encoded(1, text_frame_bytes(event(1)))
        assert wire.encoded == [text_frame_bytes(event(1))]
        assert (out.last_sent, out.credit, stats.frames_sent, stats.frames_direct) == (1, 4, 1, 1)
        assert not out.write_encoded(3, text_frame_bytes(event(3)))  # never past a gap
        wire.encoded_refused = True  # the server is closing or holding writes
        assert not out.write_encoded(2, text_frame_bytes(event(2))) and out.last_sent == 1
        await out.send_now(2, event(2))  # what the hub does then
        assert wire.seqs() == [2] and out.last_sent == 2

    run(scenario)


def test_a_frame_encoded_once_is_what_a_websocket_client_reads():
    """text_frame_bytes: one unmasked text frame, for each of the three payload length encodings,
    as websockets' own frame parser reads it on the client side."""
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    from realtime.transport import text_frame_bytes

    for size in (10, 125, 126, 300, 65535, 70_000):
        text = "é" * (size // 2) + "x" * (size % 2)
        reader = StreamReader()
        reader.feed_data(text_frame_bytes(text))
        reader.feed_eof()
        parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
        try:
            while True:
                next(parser)
        except StopIteration as done:
            frame = done.value
        assert isinstance(frame, Frame) and frame.opcode is Opcode.TEXT and frame.fin
        assert bytes(frame.data).decode() == text


def test_a_burst_goes_out_as_one_write_of_encoded_frames_within_the_credit():
    """The sender writes the buffered run after last_sent in one raw write (repeats dropped, a
    jump filled from the log first), never past the credit; the rest waits for more credit."""
    from websockets.frames import Frame
    from websockets.streams import StreamReader

    def seqs_in(data: bytes) -> list[int]:
        reader = StreamReader()
        reader.feed_data(data)
        reader.feed_eof()
        found = []
        while reader.buffer:
            parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
            try:
                while True:
                    next(parser)
            except StopIteration as done:
                found.append(json.loads(bytes(done.value.data))["seq"])
        return found

    async def scenario() -> None:
        out, wire, log, stats = socket(head=6)  # the log as the node read it: up to 6
        out.begin(epoch=1, last_sent=0, behind=False)
        out.open(write_buffered=lambda: wire.unread, writes_through=True, raw_writes=True)
        writes = wire.encoded
        out.credit = 3
        for seq in (1, 2, 3, 3):
            out.offer(seq, event(seq))
        await idle(out)
        assert [seqs_in(data) for data in writes] == [[1, 2, 3]] and out.last_sent == 3 and out.credit == 0
        out.offer(4, event(4))
        await idle(out)
        assert out.last_sent == 3  # no credit left: it waits
        out.add_credit(10)
        await idle(out)
        out.offer(7, event(7))  # 5 and 6 were never offered: read from the log first, then 7
        await idle(out)
        assert [seqs_in(data) for data in writes] == [[1, 2, 3], [4], [7]]
        assert wire.seqs() == [5, 6] and log.reads >= 1
        assert out.last_sent == 7 and stats.frames_sent == 7

    run(scenario)
