"""Interpreter settings for long-running Chorus processes (ASGI nodes and Celery workers).

Two pauses land in the tail of a comment's way from ``POST`` to its subscribers:

- CPython's full (generation 2) garbage collection walks every tracked object. A Django process
  holds a few hundred thousand of them from its imports alone, so a full collection that starts
  inside a request or a task stops every thread of the process for tens of milliseconds (measured:
  72 ms in the middle of a ``POST /comments``). What a process loads at startup lives until it
  exits: ``gc.freeze()`` moves it to the permanent generation, which collections skip, so they only
  walk what was allocated since. Everything allocated later is collected as before; only a cycle
  among startup objects that later becomes unreachable would stay (startup state is module-level
  and lives as long as the process anyway).
- A node's event loop fans each event out to hundreds of sockets while Django's synchronous views
  run in threads beside it. A thread waiting for the GIL gets it only when the holder releases it
  or the switch interval (5 ms by default) expires, and a request does a dozen I/O calls, each
  followed by such a wait: a comment posted to a busy node waited tens of milliseconds for the
  GIL alone. A shorter interval hands the GIL over sooner; it costs nothing while only one thread
  runs.

A node's long-lived objects are not only its startup heap: a thousand subscribers connecting add a
few hundred thousand objects (protocols, transports, consumers), and each full collection then
walked them all again: 100-200 ms pauses in a node, several in ten seconds after the sockets
arrived, each one the p99 of the comments it held up (``docs/BENCHMARKS.md``). ``HeapFreezer``
keeps freezing what survives a young collection, so full collections stay short; the price is
that a frozen object that becomes cyclic garbage (a closed socket's cycles) waits for the next
full collection it schedules itself (``CHORUS_GC_FULL_SECONDS``), one longer pause that often.
"""

import asyncio
import gc
import logging
import sys
import time

from django.conf import settings

logger = logging.getLogger(__name__)


def freeze_startup_heap() -> None:
    """Collect once, then exempt everything alive now from future collections.

    Call it when a process has finished loading: an ASGI node once its application is built, a
    Celery worker once its tasks are loaded (before it forks its pool). ``CHORUS_GC_FREEZE=0`` turns
    it off.
    """
    if not settings.CHORUS_GC_FREEZE:
        return
    gc.collect()
    gc.freeze()


def shorten_gil_switch_interval() -> None:
    """Apply ``CHORUS_GIL_SWITCH_INTERVAL`` (seconds; 0 keeps CPython's default)."""
    if settings.CHORUS_GIL_SWITCH_INTERVAL > 0:
        sys.setswitchinterval(settings.CHORUS_GIL_SWITCH_INTERVAL)


class HeapFreezer:
    """Keeps a long-running node's surviving objects out of full collections (a node service).

    Every ``refreeze_seconds``: collect the young generations (what a request or an event left
    behind dies there), then freeze what is left, which has by then outlived them: sockets and
    their state. Every ``full_seconds``: unfreeze, collect everything (reclaiming cycles that died
    frozen) and freeze again. Off with ``CHORUS_GC_FREEZE=0``.
    """

    def __init__(self, *, refreeze_seconds: float, full_seconds: float) -> None:
        self.refreeze_seconds = refreeze_seconds
        self.full_seconds = full_seconds
        self.task: asyncio.Task[None] | None = None
        self.refreezes = 0
        self.full_collections = 0

    @classmethod
    def from_settings(cls) -> "HeapFreezer":
        return cls(refreeze_seconds=settings.CHORUS_GC_REFREEZE_SECONDS, full_seconds=settings.CHORUS_GC_FULL_SECONDS)

    def start(self) -> None:
        if settings.CHORUS_GC_FREEZE and self.refreeze_seconds > 0 and self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name="heap-freezer")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None

    def refreeze(self, *, full: bool) -> None:
        if full:
            gc.unfreeze()
            started = time.perf_counter()
            gc.collect()
            self.full_collections += 1
            logger.info("full garbage collection: %.0f ms", (time.perf_counter() - started) * 1000)
        else:
            gc.collect(1)
            self.refreezes += 1
        gc.freeze()

    async def _run(self) -> None:
        last_full = time.monotonic()
        while True:
            await asyncio.sleep(self.refreeze_seconds)
            full = self.full_seconds > 0 and time.monotonic() - last_full >= self.full_seconds
            self.refreeze(full=full)
            if full:
                last_full = time.monotonic()
