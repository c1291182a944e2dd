"""Cheaper per-frame work under daphne, applied when the ASGI application is imported.

Two costs the fan-out profile found in daphne's stack, neither of which changes what is sent:

- autobahn (daphne's WebSocket library) builds debug-log arguments for every frame it sends, even
  when debug logging is off, and colours them with click whenever click is importable (uvicorn
  depends on click, so it is): about a tenth of a node's CPU. Plain text serves a log line nobody
  prints just as well.
- Twisted never writes during ``transport.write``: it appends to the connection's buffer,
  registers the socket for writability (an ``epoll_ctl``), writes on the reactor's next turn and
  unregisters (another ``epoll_ctl``). For one small frame to each of hundreds of idle sockets that
  bookkeeping cost more than the writes themselves, and every frame waited for the reactor's next
  turn. For the hub's direct writes to idle sockets (``write_mode.immediate``) with nothing
  buffered, ``write_through`` sends at once, as asyncio's transports do, and leaves Twisted's
  buffered path to whatever the kernel did not take (and to TLS, and to a connection that is
  closing or lost). Order is kept: it only writes directly when the buffer is empty. Every other
  write is buffered as before, so a burst's frames still share one system call per socket.
  ``CHORUS_DAPHNE_WRITE_THROUGH=0`` turns it off.

One gap it fills rather than a cost: daphne drops the ``reason`` of an ASGI ``websocket.close``
(its ``serverClose`` takes only the code), so a client would see 4503 without "node draining".
``close_with_reason`` passes the reason on to autobahn, which sends it in the close frame.
"""

import contextlib
from typing import Any

from django.conf import settings

from realtime.transport import write_mode


def _write_through(buffered_write: Any) -> Any:
    def write(self: Any, data: bytes) -> None:
        if (
            not write_mode.immediate
            or not data
            or self.TLS
            or self.disconnecting
            or not self.connected
            or self._writeDisconnected
            or getattr(self, "_aborting", False)
            or self._tempDataLen
            or len(self.dataBuffer) != self.offset
        ):
            buffered_write(self, data)
            return
        sent = self.writeSomeData(data)  # Twisted's own send: maps EAGAIN to 0, a dead peer to an error
        if isinstance(sent, Exception) or sent < 0:
            buffered_write(self, data)  # Twisted's next write attempt meets the error and closes
        elif sent < len(data):
            buffered_write(self, data[sent:])

    write.chorus_write_through = True  # type: ignore[attr-defined]
    return write


def _close_with_reason(handle_reply: Any) -> Any:
    def handle(self: Any, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.close" and message.get("reason") and self.state != self.STATE_CONNECTING:
            self.sendClose(code=message.get("code") or 1000, reason=message["reason"])
            return
        handle_reply(self, message)

    handle.chorus_close_reason = True  # type: ignore[attr-defined]
    return handle


def daphne_tune() -> None:
    with contextlib.suppress(ImportError):
        import autobahn.util

        autobahn.util._HAS_CLICK = False
    with contextlib.suppress(ImportError):
        from daphne.ws_protocol import WebSocketProtocol

        if not getattr(WebSocketProtocol.handle_reply, "chorus_close_reason", False):
            WebSocketProtocol.handle_reply = _close_with_reason(WebSocketProtocol.handle_reply)
    if settings.CHORUS_DAPHNE_WRITE_THROUGH:
        with contextlib.suppress(ImportError):
            from twisted.internet import tcp

            if not getattr(tcp.Connection.__dict__.get("write"), "chorus_write_through", False):
                tcp.Connection.write = _write_through(tcp.Connection.write)
