"""How many bytes a WebSocket has written that the client has not yet taken off the wire.

ASGI's ``send`` never pushes back: daphne hands every frame to Twisted, which appends it to the
transport's write buffer and returns at once, so a client that never reads grows the server's
memory without limit. The buffer is still there to be measured. This module finds the transport
behind an ASGI ``send`` callable (daphne passes ``partial(server.handle_reply, protocol)``;
uvicorn passes a bound method of its protocol object) and reports its unflushed bytes, so the
consumer can stop writing to a socket that is not draining.
"""

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


def handshake_forget(send: Callable[..., Any]) -> None:
    """Let go of what the server keeps of a finished handshake and never reads again.

    uvicorn's websockets-sansio protocol holds the parsed request and the response it sent, with
    their headers, for the life of the connection (and the websockets parser's frame holds the
    request too): about 3 KB of each idle socket's memory. Both are read only until the handshake
    is complete; the application has the request's headers in its scope.
    """
    protocol = _protocol(send)
    if type(protocol).__name__ == "WebSocketsSansIOProtocol" and getattr(protocol, "handshake_complete", False):
        request = protocol.request
        protocol.request = protocol.response = None
        if request is not None:
            request.headers.clear()


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
