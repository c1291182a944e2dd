"""Where the real-time tier's database reads run: off the event loop, and never on asgiref's one thread.

``database_sync_to_async`` is thread-sensitive by default: outside a request, every ORM call of a
node queues on a single thread, so one long replay delays every connect and every gap repair
behind it. The node's sockets and hub read on two small thread pools instead, together smaller
than the database pool (``project/settings/database.py``), so a read never waits for a connection:

- ``read_quick``: what a connect or the hub is waiting for (who the user is, which stream, a
  stream's head, a gap repair);
- ``read_replay``: pages of the event log sent to one socket (resume, catch-up, resync), which a
  reconnect storm asks for by the thousand. However long they queue, they queue here.

Both close the thread's database connection around each call, as ``database_sync_to_async`` does,
so a pooled connection goes back to the pool at once.
"""

from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Generic, ParamSpec, TypeVar

from channels.db import DatabaseSyncToAsync
from django.conf import settings

P = ParamSpec("P")
R = TypeVar("R")


def _database_pool_size() -> int:
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    return int(pool.get("max_size", 4)) if isinstance(pool, dict) else 4


@cache
def _executor(lane: str) -> ThreadPoolExecutor:
    # Of the pool, a quarter serves the quick reads and a little under half the replays; the rest
    # is left to HTTP requests (asgiref's thread) and anything else the node runs.
    size = _database_pool_size()
    workers = max(1, size // 4) if lane == "quick" else max(1, size // 2 - 1)
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"realtime-{lane}-read")


def read_quick(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``func`` as a coroutine on the quick-read threads (lookups, heads, the hub's repairs)."""
    return _Lane(func, "quick")


def read_replay(func: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """``func`` as a coroutine on the replay threads (event-log pages for one socket)."""
    return _Lane(func, "replay")


class _Lane(Generic[P, R]):
    """Binds the executor on first call, once settings are loaded (modules import this earlier)."""

    def __init__(self, func: Callable[P, R], lane: str) -> None:
        self._func = func
        self._lane = lane
        self._call: Callable[P, Awaitable[R]] | None = None

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        if self._call is None:
            self._call = DatabaseSyncToAsync(self._func, thread_sensitive=False, executor=_executor(self._lane))
        return self._call(*args, **kwargs)
