"""Django's HTTP handler for the ASGI nodes: a few long-lived request threads, one hop per request.

Django's own ``ASGIHandler`` gives every request a new thread (a fresh single-thread executor per
``ThreadSensitiveContext``) and a second one to join it, and with synchronous middleware and views
it crosses between the event loop and that thread five times per request (``request_started``,
into the middleware, back to the loop for the URL resolver, into the view, ``response.close``).
Under load it also starts as many threads as there are requests, each taking a database connection
from the pool, so a burst exhausts the pool (``PoolTimeout`` after 5 s) and the node's own queueing
reads as database failures and as latency.

This handler keeps ``CHORUS_HTTP_THREADS`` threads for the life of the process. A request waits on
the event loop (cheap, no thread, no connection) until one is free, then runs the whole synchronous
part in it in one hop: ``request_started``, the middleware chain (loaded in synchronous mode) and
the view, and for a non-streaming response its ``close()`` (``request_finished``, which hands the
database connection back) before the bytes are sent from the loop. Each request still has all of
its synchronous work on one thread, as Django requires for its connections and transactions
(asgiref's ``ThreadSensitiveContext`` with an executor).

A request that waits longer than ``CHORUS_HTTP_QUEUE_SECONDS`` for a thread is answered
``503`` with ``Retry-After`` in the API's JSON shape without running: the node is saturated, and
telling the client when to come back beats holding its connection until it gives up.

A body over ``CHORUS_MAX_REQUEST_BYTES`` is answered ``413`` in the API's JSON shape (Django's
own check would read it all first, then answer an HTML 400): at once when its ``Content-Length``
says so, or as soon as a chunked body grows past it, and the connection is closed rather than
reading the rest. Under daphne, Twisted would buffer the whole body before the application sees
the request, so ``project/server_limits.py`` applies the same limit there first.
"""

import asyncio
import logging
import tempfile
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse
from django.http.response import HttpResponseBase
from django.urls import set_script_prefix

from project.api_errors import Overloaded, answer_of, too_large_body

logger = logging.getLogger(__name__)

REFUSAL_LOG_INTERVAL = 10.0


class BodyTooLarge(Exception):
    """The request body grew past ``CHORUS_MAX_REQUEST_BYTES`` while it was being read."""


def content_length(scope: dict[str, Any]) -> int | None:
    """The request's ``Content-Length`` (``None`` when absent, e.g. a chunked body)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before the application runs
    return None


class RequestThreads:
    """A fixed set of single-thread executors, lent to one request at a time, first come first served."""

    def __init__(self, size: int) -> None:
        self._idle = deque(ThreadPoolExecutor(max_workers=1, thread_name_prefix="http") for _ in range(size))
        self._waiters: deque[asyncio.Future[ThreadPoolExecutor]] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, timeout: float) -> ThreadPoolExecutor | None:
        """A free thread, or ``None`` if none came free within ``timeout`` seconds."""
        if self._idle and not self._waiters:
            return self._idle.popleft()
        waiter: asyncio.Future[ThreadPoolExecutor] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # handed over just as the wait ran out
                return waiter.result()
            waiter.cancel()
            return None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())
            waiter.cancel()
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self, executor: ThreadPoolExecutor) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(executor)
                return
        self._idle.append(executor)


_threads: RequestThreads | None = None


def request_threads() -> RequestThreads:
    """The process's request threads, shared by Django's handler and the HTTP fast lane, so
    one budget bounds the requests running (and the database connections they hold)."""
    global _threads
    if _threads is None:
        _threads = RequestThreads(settings.CHORUS_HTTP_THREADS)
    return _threads


class ChorusASGIHandler(ASGIHandler):
    """``ASGIHandler`` with the synchronous middleware chain run on a bounded set of request threads."""

    def __init__(self) -> None:
        BaseHandler.__init__(self)
        # Synchronous mode: the middleware and the view run in one thread, with no hop between them.
        self.load_middleware(is_async=False)
        self.threads = request_threads()
        self.queue_seconds = settings.CHORUS_HTTP_QUEUE_SECONDS
        self.max_body = settings.CHORUS_MAX_REQUEST_BYTES
        self._refused = 0
        self._refusal_logged_at = 0.0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        if (content_length(scope) or 0) > self.max_body:
            await self._too_large(send)
            return
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        except BodyTooLarge:
            await self._too_large(send)
            return
        try:
            executor = await self.threads.acquire(self.queue_seconds)
            if executor is None:
                await self._refuse(send)
                return
            try:
                async with ThreadSensitiveContext(executor=executor):
                    response = await sync_to_async(self._respond, thread_sensitive=True)(scope, body_file)
                    await self.send_response(response, send)
                    if response.streaming:
                        await sync_to_async(response.close, thread_sensitive=True)()
            finally:
                self.threads.release(executor)
        finally:
            body_file.close()

    async def read_body(self, receive: Any) -> Any:
        """Django's ``read_body``, stopping with ``BodyTooLarge`` once the body passes the limit."""
        body_file = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE, mode="w+b")  # noqa: SIM115 (the caller closes it)
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                body_file.close()
                raise RequestAborted()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                body_file.close()
                raise BodyTooLarge()
            body_file.write(chunk)
            if not message.get("more_body", False):
                break
        body_file.seek(0)
        return body_file

    def _respond(self, scope: dict[str, Any], body_file: Any) -> HttpResponseBase:
        """All of a request's synchronous work, on its request thread."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            # As Django's ASGIHandler does; the stubs do not declare this private attribute.
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        assert response is not None  # create_request returns a request, or the response refusing it
        if not response.streaming:
            # The body is in memory: finish the request (request_finished gives the database
            # connection back to the pool) before the loop writes it out.
            response.close()
        return response

    async def _refuse(self, send: Any) -> None:
        self._refused += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL:
            logger.warning(
                "no request thread free for %.1f s: refused %d request(s) with 503 (%d waiting)",
                self.queue_seconds, self._refused, self.threads.waiting,
            )  # fmt: skip
            self._refused, self._refusal_logged_at = 0, now
        refusal = answer_of(Overloaded())
        headers = [(name.lower().encode(), value.encode()) for name, value in refusal.headers]
        await _answer(send, refusal.status, refusal.body_bytes(), headers)

    async def _too_large(self, send: Any) -> None:
        # Closing the connection is what stops the client's upload: the rest is never read.
        await _answer(send, 413, too_large_body(self.max_body), [(b"connection", b"close")])


async def _answer(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """A JSON response sent straight from the event loop, without Django."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
