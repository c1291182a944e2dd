"""The node: the one object of an ASGI process that owns what the process runs beside its requests.

It holds the hub (pub/sub subscriptions, gap repair, the tail check), the heartbeat (the registry
entry, presence), the drain (SIGTERM), the node's counters and the limits its sockets share, and
what apps add to it in their ``AppConfig.ready`` (``node.add``; the reactions app adds its counts
emitter and its hot-stream cache). Nothing starts itself: ``Node.start`` starts all of it, once,
in the server's event loop, and ``Node.stop`` stops it:

- uvicorn, or any server that speaks the ASGI lifespan protocol: lifespan startup and shutdown,
  answered by the node's outermost ASGI layer (``Node.asgi``);
- daphne speaks no lifespan: ``project/asgi.py`` hands both to Twisted's reactor
  (``realtime.daphne_tuning.daphne_lifecycle``): start when it runs, stop before it shuts down;
- a server that does neither starts the node with its first connection, and the heartbeat leaves
  the registry at interpreter exit.

Code that needs a piece takes it from ``node`` (``node.hub``, ``node.stats``,
``node.part(HotStreams)``); no module keeps an instance of its own.
"""

import asyncio
import logging
from typing import Any, Protocol, TypeVar, runtime_checkable

from django.conf import settings

from realtime.drain import ASGIApp, Drain, drain_middleware
from realtime.hub import StreamHub
from realtime.nodes import NodeHeartbeat
from realtime.outbound import OutboundLimits
from realtime.stats import NodeStats

logger = logging.getLogger(__name__)

# How long one piece may take to stop before the node gives up on it and goes on with the rest.
STOP_SECONDS = 3.0

T = TypeVar("T")


@runtime_checkable
class NodeService(Protocol):
    """Background work an app adds to the node: started with the node and stopped with it."""

    def start(self) -> None:
        """Start (tasks in the running loop); never blocks."""

    async def stop(self) -> None:
        """Stop what ``start`` started."""


class Node:
    """This process's real-time machinery; ``node`` below is the one instance."""

    def __init__(self) -> None:
        self.stats = NodeStats()
        self.hub = StreamHub(
            tail_check_seconds=settings.CHORUS_HUB_TAIL_CHECK_SECONDS,
            topology_seconds=settings.CHORUS_PUBSUB_TOPOLOGY_SECONDS,
        )
        self.heartbeat = NodeHeartbeat(hub=self.hub, stats=self.stats)
        self.drain = Drain(hub=self.hub, heartbeat=self.heartbeat)
        self.outbound_limits = OutboundLimits.from_settings()
        self.started = False
        self.stopped = False
        self._parts: dict[type[Any], object] = {}

    # --- what apps add -------------------------------------------------------------------------

    def add(self, part: object) -> None:
        """Make ``part`` the node's one instance of its class; if it is a ``NodeService`` it runs
        from the node's start to its stop. Apps call this in ``AppConfig.ready``."""
        if self.started:
            raise RuntimeError(f"{type(part).__name__} added after the node started")
        self._parts[type(part)] = part

    def part(self, kind: type[T]) -> T:
        """The instance of ``kind`` an app added (``LookupError`` if none was)."""
        part = self._parts.get(kind)
        if not isinstance(part, kind):
            raise LookupError(f"no {kind.__name__} was added to the node")
        return part

    def _services(self) -> list[NodeService]:
        return [part for part in self._parts.values() if isinstance(part, NodeService)]

    # --- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the node's background work in the running event loop; later calls do nothing.

        The server must have installed its own SIGTERM handler by now: the drain takes it over.
        """
        if self.started:
            return
        self.started = True
        self.drain.install()
        self.hub.start()
        self.heartbeat.start()
        for service in self._services():
            service.start()
        logger.info("node %s started", self.heartbeat.node_id)

    async def stop(self) -> None:
        """Leave the registry, then stop the apps' work and the hub together; never raises; once.

        What has not stopped after ``STOP_SECONDS`` is cancelled: the process is exiting, and the
        drain's exit deadline (``realtime.drain.EXIT_GRACE_SECONDS``) is not far behind.
        """
        if not self.started or self.stopped:
            return
        self.stopped = True
        self.heartbeat.deregister()
        loop = asyncio.get_running_loop()
        pieces: list[NodeService] = [*self._services(), self.hub]
        stopping = {
            loop.create_task(piece.stop(), name=f"node-stop-{type(piece).__name__}"): type(piece).__name__
            for piece in pieces
        }
        done, late = await asyncio.wait(stopping, timeout=STOP_SECONDS)
        for task in late:
            task.cancel()
            logger.warning("node: %s did not stop within %.0f s", stopping[task], STOP_SECONDS)
        for task in done:
            if task.exception() is not None:
                logger.warning("node: %s failed to stop", stopping[task], exc_info=task.exception())
        self.drain.uninstall()
        logger.info("node %s stopped", self.heartbeat.node_id)

    # --- the outermost ASGI layer --------------------------------------------------------------

    def asgi(self, application: ASGIApp) -> ASGIApp:
        """Wrap the application: the lifespan protocol, the probes and the drain's request count
        (``realtime.drain``), the node's address for the registry, and the start for a server that
        sent no lifespan startup."""
        inner = drain_middleware(application, self.drain)
        heartbeat = self.heartbeat

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
                return
            if not self.started:
                self.start()
            if not heartbeat.url:
                heartbeat.address_from(scope)
            await inner(scope, receive, send)

        return app

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                except Exception as exc:
                    logger.exception("node failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return


node = Node()
