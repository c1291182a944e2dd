"""What runs only under daphne: cheaper per-frame work, the close reason, and the node's start and stop.

``project/asgi.py`` applies all of it only when ``daphne_serving()``: importing daphne proves
nothing (Django imports ``daphne.server``, and with it Twisted's reactor, for the ``daphne`` app in
``INSTALLED_APPS``, under uvicorn too); daphne's command line (or its ``runserver``) having
imported the application does, and it imports it before it builds its factories and runs the
reactor, so the patches below are in place for both.

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

And daphne speaks no ASGI lifespan: ``daphne_lifecycle`` starts the node (``realtime.node``) when
Twisted's reactor runs and stops it before the reactor shuts down.
"""

import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine
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


def daphne_serving() -> bool:
    """True if daphne serves this process: its command line or its ``runserver`` is what loaded us."""
    return "daphne.cli" in sys.modules or "daphne.management.commands.runserver" in sys.modules


def daphne_tune() -> None:
    """Patch autobahn and Twisted (see the module docstring); call only when ``daphne_serving()``."""
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
                tcp.Connection.write = _write_through(tcp.Connection.write)  # type: ignore[method-assign]


def daphne_lifecycle(*, start: Callable[[], None], stop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run ``start`` once Twisted's reactor runs, and ``stop`` before it shuts down.

    Twisted installs its signal handlers while it starts, before its "when running" calls, so the
    node's drain takes SIGTERM over from them. ``start`` runs on the asyncio loop's first turn (the
    reactor fires "when running" calls before it runs the loop). The stop is a "before shutdown"
    trigger returning a Deferred, which Twisted waits for while the loop still runs, as it does for
    daphne's own trigger that cancels the application instances.
    """
    from twisted.internet import defer
    from twisted.internet import reactor as installed

    reactor: Any = installed  # typed as a module; it is the reactor daphne installed

    def running() -> None:
        reactor.callLater(0, start)

    def shutting_down() -> "defer.Deferred[None] | None":
        try:
            task = asyncio.get_running_loop().create_task(stop())
        except RuntimeError:  # the loop is not running: nothing was started
            return None
        return defer.Deferred.fromFuture(task)

    reactor.callWhenRunning(running)
    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
