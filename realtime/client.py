"""A Python client of the stream WebSocket that survives node deaths: discover, connect, resume.

It asks ``GET /api/v1/realtime/connect?stream=SLUG`` (any of several HTTP base URLs, since the node
that answered last time may be the one that died) for a node, connects with ``?after=<last seq>``
(and ``&epoch=<epoch>`` once it knows the stream's epoch), applies each event once and in order,
and on any disconnect backs off and starts over. A ``reset`` frame (the stream's history was reset
or restored) moves it to the position the frame names; ``resets`` records them. A node that
drains sends ``draining`` and closes with 4503: the client reconnects at once (after a small random
delay, so a node's clients do not all arrive together) instead of backing off. Tests and
``bench/fanout.py`` use it; it is also a reference for client authors.
"""

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import httpx
import websockets

from realtime import protocol

logger = logging.getLogger(__name__)

# Close codes after which reconnecting cannot help.
FATAL_CLOSE_CODES = {protocol.CLOSE_BAD_REQUEST, protocol.CLOSE_STREAM_NOT_FOUND}


class StreamGone(Exception):
    """The stream does not exist (or the client's request is malformed): stop, do not retry."""


class StreamSubscriber:
    def __init__(
        self,
        *,
        slug: str,
        discovery: list[str],
        http: httpx.AsyncClient,
        after: int = 0,
        epoch: int | None = None,
        first_url: str | None = None,
        on_event: Callable[[dict[str, Any], float], None] | None = None,
        max_backoff: float = 2.0,
    ) -> None:
        self.slug = slug
        self.discovery = discovery  # HTTP base URLs of nodes to ask, in order
        self.http = http
        self.last_seq = after
        self.epoch = epoch  # the stream's epoch last_seq belongs to (None: not known yet)
        self.resets: list[tuple[int, int]] = []  # (epoch, seq) of each reset frame received
        self.first_url = first_url  # connect here first, without asking (e.g. a known node)
        self.on_event = on_event
        self.max_backoff = max_backoff
        self.seqs: list[int] = []  # every event applied, in order (tests check it is 1..N)
        self.duplicates = 0  # events received again and dropped
        self.connections = 0  # sockets opened, reconnects included
        self.urls: list[str] = []  # every socket URL used (with its query), in order
        self.errors: list[dict[str, Any]] = []  # every error frame received
        self.drained = 0  # sockets the server handed over (a draining frame)
        self.connected = asyncio.Event()

    async def discover(self) -> str:
        """The WebSocket URL of the node to use now; raises OSError-like errors when none answers."""
        last_error: Exception | None = None
        for base in random.sample(self.discovery, len(self.discovery)):
            try:
                response = await self.http.get(f"{base}/api/v1/realtime/connect", params={"stream": self.slug})
            except httpx.HTTPError as exc:
                last_error = exc
                continue
            if response.status_code == 404:
                raise StreamGone(response.text)
            if response.status_code == 200:
                return response.json()["url"]
            last_error = RuntimeError(f"discovery answered {response.status_code}")
        raise ConnectionError(f"no discovery endpoint answered: {last_error}")

    async def run(self, stop: asyncio.Event) -> None:
        """Stay subscribed until ``stop`` is set; raises StreamGone for a stream that does not exist."""
        backoff = 0.05
        while not stop.is_set():
            opened = self.connections
            try:
                url = self.first_url or await self.discover()
                self.first_url = None
                await self._session(url, stop)
                backoff = 0.05
            except StreamGone:
                raise
            except (TimeoutError, OSError, websockets.WebSocketException, ConnectionError) as exc:
                logger.debug("%s: %s; reconnecting", self.slug, exc)
            self.connected.clear()
            if self.connections > opened:
                backoff = 0.05  # that socket worked (a drain, a node gone): come back soon, with jitter
            if not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=backoff * (1 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)

    async def _session(self, url: str, stop: asyncio.Event) -> None:
        query = f"after={self.last_seq}" if self.epoch is None else f"after={self.last_seq}&epoch={self.epoch}"
        self.urls.append(f"{url}?{query}")
        async with websockets.connect(self.urls[-1], max_size=None, open_timeout=10) as ws:
            self.connections += 1
            self.connected.set()
            stopper = asyncio.ensure_future(stop.wait())
            try:
                while True:
                    receive = asyncio.ensure_future(ws.recv())
                    done, _ = await asyncio.wait({receive, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if stopper in done:
                        receive.cancel()
                        return
                    self._handle(json.loads(receive.result()))
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd is not None else None
                if code in FATAL_CLOSE_CODES:
                    raise StreamGone(f"closed with {code}") from exc
                raise
            finally:
                stopper.cancel()

    def _handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "hello":
            self.epoch = frame.get("epoch", self.epoch)
            return
        if kind == "reset":
            self.epoch, self.last_seq = frame["epoch"], frame["seq"]
            self.resets.append((self.epoch, self.last_seq))
            return
        if kind == "error":
            self.errors.append(frame)
        elif kind == "draining":
            self.drained += 1
        if kind != "event":
            return
        seq = frame["seq"]
        if seq <= self.last_seq:
            self.duplicates += 1
            return
        if seq != self.last_seq + 1:
            # The server sends each socket's events in order from ``after``; a jump means a broken
            # socket, so start over from the last applied event.
            raise ConnectionError(f"expected seq {self.last_seq + 1}, got {seq}")
        self.last_seq = seq
        self.seqs.append(seq)
        if self.on_event is not None:
            self.on_event(frame, time.monotonic())
