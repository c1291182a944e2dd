"""Group commit on the event loop: what arrives while a batch is being written joins the next one.

A node writing one row per request pays a database round trip, a commit and the ORM's overhead per
request; under a burst those, not the rows, are what it spends its CPU on. ``GroupCommit`` lets
requests on the event loop ``submit`` an item and wait for its result: one batch at a time is
written by ``flush(items) -> results`` on one of the node's request threads (the same budget as
Django's requests); everything submitted meanwhile waits for the next batch. A lone request is
written at once, alone; a crowd is written in as few transactions as the database needs.
"""

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from channels.db import database_sync_to_async
from django.conf import settings

from project.api_errors import Overloaded, error_mapping
from project.asgi_handler import request_threads

Item = TypeVar("Item")
Result = TypeVar("Result")


class NoThreadFree(Exception):
    """The item waited ``CHORUS_HTTP_QUEUE_SECONDS`` for a batch (or a batch for a request thread)
    without being written: the node or its database is saturated, and the item never will be."""


error_mapping(NoThreadFree, lambda exc: Overloaded())


class GroupCommit(Generic[Item, Result]):
    def __init__(self, flush: Callable[[list[Item]], Sequence[Result]], *, max_batch: int) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result], asyncio.TimerHandle]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Queue ``item`` for the next batch and wait for its result (or the batch's exception).

        An item still queued after ``CHORUS_HTTP_QUEUE_SECONDS`` is withdrawn and refused with
        ``NoThreadFree`` (never written); once its batch is being written it waits for the answer.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        # A timer rather than wait_for and shield: cheaper, on a path taken once per request.
        expiry = loop.call_later(settings.CHORUS_HTTP_QUEUE_SECONDS, self._expire, future)
        self._waiting.append((item, future, expiry))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_batches())
        return await future

    def _expire(self, future: "asyncio.Future[Result]") -> None:
        for index, (_item, queued, _expiry) in enumerate(self._waiting):
            if queued is future:
                del self._waiting[index]
                if not future.done():
                    future.set_exception(NoThreadFree())
                return

    async def _write_batches(self) -> None:
        threads = request_threads()
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            for _item, _future, expiry in batch:
                expiry.cancel()  # being written now: it waits for its answer
            executor = await threads.acquire(settings.CHORUS_HTTP_QUEUE_SECONDS)
            if executor is None:
                self._settle(batch, error=NoThreadFree())
                continue
            try:
                write = database_sync_to_async(self._flush, thread_sensitive=False, executor=executor)
                results = await write([item for item, _future, _expiry in batch])
            except Exception as exc:
                self._settle(batch, error=exc)
            else:
                for (_item, future, _expiry), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            finally:
                threads.release(executor)

    @staticmethod
    def _settle(batch: list[tuple[Item, "asyncio.Future[Result]", asyncio.TimerHandle]], *, error: Exception) -> None:
        for _item, future, _expiry in batch:
            if not future.done():
                future.set_exception(error)
