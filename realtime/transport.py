"""How many bytes a WebSocket has written that the client has not yet taken off the wire.

ASGI's ``send`` never pushes back: daphne hands every frame to Twisted, which appends it to the
transport's write buffer and returns at once, so a client that never reads grows the server's
memory without limit. The buffer is still there to be measured. This module finds the transport
behind an ASGI ``send`` callable (daphne passes ``partial(server.handle_reply, protocol)``;
uvicorn passes a bound method of its protocol object) and reports its unflushed bytes, so the
consumer can stop writing to a socket that is not draining.
"""

import asyncio
import struct
from collections.abc import Callable
from functools import partial
from typing import Any


class _WriteMode:
    """Whether the write being made should reach the socket at once (see ``realtime.daphne_tuning``).

    Set only around the hub's direct writes to idle sockets: there a frame should leave now. The
    senders' writes keep Twisted's buffering, which joins a burst's frames into one system call.
    """

    immediate = False


write_mode = _WriteMode()

WriteBufferProbe = Callable[[], int]


def _twisted_pending(transport: Any) -> int:
    # twisted.internet.abstract.FileDescriptor keeps written data in dataBuffer (from offset on)
    # plus _tempDataBuffer (not yet joined); both are released only when the kernel takes them.
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def _protocol(send: Callable[..., Any]) -> Any:
    if isinstance(send, partial) and send.args:
        return send.args[0]  # daphne
    return getattr(send, "__self__", None)  # uvicorn (websockets, websockets-sansio, wsproto)


def _transport(send: Callable[..., Any]) -> Any:
    return getattr(_protocol(send), "transport", None)


class _Inbox:
    """The part of an ``asyncio.Queue`` uvicorn's protocol uses for received events (``put_nowait``,
    ``get``, ``empty``), for one reader: a list and at most one waiter, instead of four deques."""

    __slots__ = ("_items", "_waiter")

    def __init__(self, items: list[Any]) -> None:
        self._items = items
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)

    def empty(self) -> bool:
        return not self._items

    def qsize(self) -> int:
        return len(self._items)


class _Flag:
    """The part of an ``asyncio.Event`` uvicorn's protocol uses for ``writable``, without a deque."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, is_set: bool) -> None:
        self._set = is_set
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for waiter in self._waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = None

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters = [*(self._waiters or ()), waiter]
        await waiter
        return True


def connection_trim(send: Callable[..., Any], scope: dict[str, Any]) -> None:
    """Let go of what an established socket keeps but never reads again: most of an idle socket's memory.

    - The handshake's request headers, read only while connecting (the scope dicts of every layer
      share one list: it is emptied in place).
    - uvicorn's websockets-sansio protocol holds the parsed request and the response it sent for
      the life of the connection (and the websockets parser's frame holds the request too).
    - The same protocol keeps received events in an ``asyncio.Queue`` (four deques) and its
      ``writable`` flag in an ``asyncio.Event`` (one more): about 3.8 KB per socket, for a queue
      that one reader empties. They become ``_Inbox`` and ``_Flag``, with what they hold.

    Safe only right after the handshake, from the socket's own task, while nothing waits on them.
    """
    headers = scope.get("headers")
    if isinstance(headers, list):
        headers.clear()
    protocol = _protocol(send)
    if type(protocol).__name__ != "WebSocketsSansIOProtocol" or not getattr(protocol, "handshake_complete", False):
        return
    request = protocol.request
    protocol.request = protocol.response = None
    if request is not None:
        request.headers.clear()
    queue = protocol.queue
    # typeshed declares none of asyncio.Queue's private parts (its waiters, its deque).
    if type(queue) is asyncio.Queue and not queue._getters:  # type: ignore[attr-defined]
        protocol.queue = _Inbox(list(queue._queue))  # type: ignore[attr-defined]
    writable = protocol.writable
    if type(writable) is asyncio.Event and not writable._waiters:
        protocol.writable = _Flag(writable.is_set())


def writes_through(send: Callable[..., Any]) -> bool:
    """True if a frame sent on an idle connection goes to the socket during the ``send`` call.

    asyncio transports (uvicorn) try the system call at once. Twisted (daphne) only appends to its
    buffer and writes on the reactor's next turn, unless ``realtime.daphne_tuning`` made its TCP
    transport write through.
    """
    transport = _transport(send)
    if hasattr(transport, "get_write_buffer_size"):
        return True
    return bool(getattr(getattr(type(transport), "write", None), "chorus_write_through", False))


def write_buffer_probe(send: Callable[..., Any]) -> WriteBufferProbe | None:
    """A function returning the unflushed bytes of the connection behind ``send``, or None if unknown."""
    transport = _transport(send)
    if transport is None:
        return None
    if hasattr(transport, "get_write_buffer_size"):  # asyncio transports
        return transport.get_write_buffer_size
    if all(hasattr(transport, name) for name in ("dataBuffer", "offset", "_tempDataLen")):
        return partial(_twisted_pending, transport)
    inner = getattr(transport, "transport", None)  # TLS wrapper over the TCP transport
    if inner is not None and hasattr(inner, "dataBuffer"):
        return partial(_twisted_pending, inner)
    return None


def _peer_gone_errors() -> tuple[type[BaseException], ...]:
    """What each supported server raises on a send after the client went away."""
    errors: list[type[BaseException]] = []
    try:
        from autobahn.exception import Disconnected  # daphne

        errors.append(Disconnected)
    except ImportError:
        pass
    try:
        from uvicorn.protocols.utils import ClientDisconnected  # uvicorn

        errors.append(ClientDisconnected)
    except ImportError:
        pass
    try:
        from websockets.exceptions import ConnectionClosed  # uvicorn's websockets implementations

        errors.append(ConnectionClosed)
    except ImportError:
        pass
    return tuple(errors)


# A send can race the client's disconnect: the socket is closed before the consumer hears of it.
PEER_GONE_ERRORS = _peer_gone_errors()


def text_frame_bytes(frame: str) -> bytes:
    """``frame`` as one unfragmented WebSocket text frame from a server (RFC 6455: no mask).

    The same bytes are right for every socket without a negotiated extension, so a fan-out
    encodes an event once and writes these to each socket (``raw_frame_write``).
    """
    payload = frame.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


def raw_frames_supported(send: Callable[..., Any]) -> bool:
    """Whether ``raw_frame_write`` may write to the socket behind ``send``.

    Only uvicorn's websockets-sansio protocol on a connection without extensions (Chorus runs
    uvicorn with compression off): there a send is ``conn.send_text`` (framing what
    ``text_frame_bytes`` makes), then ``transport.write``. Writing the frame encoded once skips,
    per socket, the ASGI message, uvicorn's checks and the framing.
    """
    protocol = _protocol(send)
    return (
        type(protocol).__name__ == "WebSocketsSansIOProtocol"
        and getattr(protocol, "conn", None) is not None
        and getattr(protocol, "transport", None) is not None
        and not protocol.conn.extensions
    )


def raw_frame_write(send: Callable[..., Any], data: bytes) -> bool:
    """Write ``data`` (frames from ``text_frame_bytes``) straight to the socket behind ``send``
    (one that ``raw_frames_supported``); False, with nothing written, unless the connection is
    open and uvicorn is writing now: then the caller sends through ``send``, where uvicorn decides.
    Keeps nothing per socket: the protocol is found from ``send`` on each call."""
    protocol = _protocol(send)
    transport = protocol.transport
    if (
        protocol.close_sent
        or protocol.disconnected
        or not protocol.handshake_complete
        or protocol.initial_response is not None
        or not protocol.writable.is_set()
        or protocol.conn.state is not _OPEN
        or transport.is_closing()
    ):
        return False
    transport.write(data)
    return True


def _open_state() -> object:
    try:
        from websockets.protocol import State
    except ImportError:  # daphne-only installs: raw_frames_supported is never true there
        return object()
    return State.OPEN


_OPEN = _open_state()
