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

from project.asgi_handler import request_threads

Item = TypeVar("Item")
Result = TypeVar("Result")


class NoThreadFree(Exception):
    """The item waited ``CHORUS_HTTP_QUEUE_SECONDS`` for a batch (or a batch for a request thread)
    without being written: the node or its database is saturated, and the item never will be."""


class GroupCommit(Generic[Item, Result]):
    def __init__(self, flush: Callable[[list[Item]], Sequence[Result]], *, max_batch: int) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: Item) -> Result:
        """Queue ``item`` for the next batch and wait for its result (or the batch's exception)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_batches())
        # Shielded: a client that goes away must not cancel the batch its item is part of.
        try:
            return await asyncio.wait_for(asyncio.shield(future), settings.CHORUS_HTTP_QUEUE_SECONDS)
        except TimeoutError:
            if not self._withdraw(future):
                return await asyncio.shield(future)  # its batch is being written: the answer is near
            raise NoThreadFree from None

    def _withdraw(self, future: "asyncio.Future[Result]") -> bool:
        """Take a still-queued item out (the node is saturated: it is refused, never written)."""
        for index, (_item, queued) in enumerate(self._waiting):
            if queued is future:
                del self._waiting[index]
                return True
        return False

    async def _write_batches(self) -> None:
        threads = request_threads()
        while self._waiting:
            batch, self._waiting = self._waiting[: self._max_batch], self._waiting[self._max_batch :]
            executor = await threads.acquire(settings.CHORUS_HTTP_QUEUE_SECONDS)
            if executor is None:
                self._settle(batch, error=NoThreadFree())
                continue
            try:
                write = database_sync_to_async(self._flush, thread_sensitive=False, executor=executor)
                results = await write([item for item, _ in batch])
            except Exception as exc:
                self._settle(batch, error=exc)
            else:
                for (_item, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
            finally:
                threads.release(executor)

    @staticmethod
    def _settle(batch: list[tuple[Item, "asyncio.Future[Result]"]], *, error: Exception) -> None:
        for _item, future in batch:
            if not future.done():
                future.set_exception(error)
