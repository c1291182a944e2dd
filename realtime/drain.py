"""Graceful drain: on SIGTERM a node hands its clients to the other nodes, then exits.

Neither server drains WebSockets on its own: daphne closes every socket at once on SIGTERM
(django/daphne#177) and uvicorn closes them all with 1012 before it even tells the application
(its lifespan shutdown comes last). So the node takes SIGTERM from the server, in the server's own
process, and only hands it back once it has drained:

1. readiness (``/readyz``) turns 503 and the node leaves the registry, so the balancer and
   discovery stop sending clients to it; liveness (``/livez``) stays 200 until the process exits;
2. a new stream socket is refused: a ``draining`` frame, then close 4503 "node draining";
3. each connected socket gets a ``draining`` frame carrying its ``last_seq`` and the same close, at
   a random moment within ``CHORUS_DRAIN_SECONDS``, so its clients do not all reconnect at once;
4. HTTP requests already in the application are awaited (at most ``HTTP_GRACE_SECONDS``);
5. the server's own SIGTERM handler runs: it stops listening and exits, with nothing left to cut.

A second SIGTERM skips what is left of the drain. SIGINT (Ctrl-C) is left to the server: it stops
at once.
"""

import asyncio
import json
import logging
import os
import random
import signal
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings

from realtime.hub import StreamHub
from realtime.nodes import NodeHeartbeat

logger = logging.getLogger(__name__)

# After the sockets were told, how long the node waits for HTTP requests still in the application.
HTTP_GRACE_SECONDS = 5.0
# After the server was told to stop: how long it may take before the node exits regardless (a
# client that never answers a close handshake must not hold the node past its deadline).
EXIT_GRACE_SECONDS = 5.0

READY_PATH = "/readyz"
LIVE_PATH = "/livez"


class Drain:
    """The node's drain state: read by the probes and the stream consumer, driven by SIGTERM.

    The node (``realtime.node``) owns it and installs its signal hook when it starts.
    """

    def __init__(self, *, hub: StreamHub, heartbeat: NodeHeartbeat) -> None:
        self._hub = hub
        self._heartbeat = heartbeat
        self.draining = False
        self.http_in_flight = 0  # HTTP requests inside the application (probes excluded)
        self._task: asyncio.Task[None] | None = None
        self._server_handler: Any = None
        self._installed = False

    # --- the signal hook ---------------------------------------------------------------------

    def install(self) -> None:
        """Take SIGTERM over from the server; call once the server has installed its own handler.

        Both servers install theirs with ``signal.signal`` before the node starts (uvicorn before
        the lifespan startup, Twisted while the reactor starts, before its "when running" calls).
        Only the main thread may set a signal handler; both servers run their loop there.
        """
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._installed = True
        loop = asyncio.get_running_loop()
        self._server_handler = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            loop.call_soon_threadsafe(self.begin)

        signal.signal(signal.SIGTERM, on_sigterm)

    def uninstall(self) -> None:
        """Give SIGTERM back to the server's handler (the node stops)."""
        if not self._installed or threading.current_thread() is not threading.main_thread():
            return
        self._installed = False
        if self._server_handler is not None:
            signal.signal(signal.SIGTERM, self._server_handler)

    def begin(self) -> None:
        """Start draining (first SIGTERM), or stop at once (a second one)."""
        if self._task is not None:
            logger.warning("second SIGTERM while draining: stopping now")
            self._stop_server()
            return
        self.draining = True
        self._task = asyncio.get_running_loop().create_task(self._run(), name="node-drain")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        window = max(0.0, settings.CHORUS_DRAIN_SECONDS)
        try:
            self._heartbeat.deregister()
            sockets = self._hub.subscribers()
            logger.info("draining: %d socket(s) over %.1f s", len(sockets), window)
            leaving: set[asyncio.Task[None]] = set()
            for at, socket in sorted(((random.uniform(0, window), s) for s in sockets), key=lambda pair: pair[0]):
                delay = started + at - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                leaving.add(loop.create_task(socket.leave()))
            # Sockets that were joining when the drain began refuse themselves once joined; any
            # other late one leaves now.
            leaving.update(loop.create_task(socket.leave()) for socket in self._hub.subscribers())
            if leaving:
                await asyncio.wait(leaving, timeout=HTTP_GRACE_SECONDS)
            deadline = loop.time() + HTTP_GRACE_SECONDS
            while self.http_in_flight > 0 and loop.time() < deadline:
                await asyncio.sleep(0.02)
            if self.http_in_flight:
                logger.warning("drain: %d HTTP request(s) still running at the deadline", self.http_in_flight)
            logger.info("drained in %.1f s; stopping", loop.time() - started)
        except Exception:
            logger.exception("drain failed; stopping")
        self._stop_server()

    def _stop_server(self) -> None:
        handler = self._server_handler
        asyncio.get_running_loop().call_later(EXIT_GRACE_SECONDS, self._exit_now)
        if callable(handler):
            handler(signal.SIGTERM, None)
        elif handler != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    @staticmethod
    def _exit_now() -> None:
        logger.error("the server did not stop %.0f s after the drain; exiting", EXIT_GRACE_SECONDS)
        logging.shutdown()
        os._exit(1)


# --- probes and request accounting (outermost ASGI layer) -------------------------------------------

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def _answer(send: Any, status: int, body: dict[str, Any], *, head: bool) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else payload})


def drain_middleware(application: ASGIApp, drain: Drain) -> ASGIApp:
    """Answers ``/readyz`` and ``/livez`` on the event loop, and counts HTTP requests in flight.

    The probes never reach Django: a node whose request threads are all busy is still alive, and
    a balancer's or an orchestrator's probe carries a Host header Django would refuse.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await application(scope, receive, send)
        path, head = scope.get("path"), scope.get("method") == "HEAD"
        if path == READY_PATH:
            if drain.draining:
                return await _answer(send, 503, {"status": "draining"}, head=head)
            return await _answer(send, 200, {"status": "ready"}, head=head)
        if path == LIVE_PATH:
            return await _answer(send, 200, {"status": "alive", "draining": drain.draining}, head=head)
        drain.http_in_flight += 1
        try:
            return await application(scope, receive, send)
        finally:
            drain.http_in_flight -= 1

    return app
