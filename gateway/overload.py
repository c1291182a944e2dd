"""Load shedding by priority: refuse cheap-to-lose work first when the system falls behind.

Three signals, all per node and cheap to check: the publish lag (how long the oldest accepted
comment has waited for its stream's sequencer, from PostgreSQL), the Celery queue depth
(``project/queues.py``; both refreshed off the request path every ``REFRESH_SECONDS``) and this
node's average API latency. A burst the sequencer absorbs raises none of them much: comments are
refused only when the pipeline behind them really falls behind. ``low`` work (reaction taps,
WebSocket frames such as presence pings) is shed at the lower thresholds, ``normal`` work
(comments) only at the higher ones; the internal API is never shed.
"""

import logging
import threading

from django.conf import settings
from django.db import DatabaseError, connection

from comments.selectors import comments_pending_oldest_age
from project.queues import task_queue_depth
from realtime.node import node

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 0.5
LATENCY_WEIGHT = 0.1  # weight of the newest sample in the moving average
SHED_RETRY_AFTER = 2
PRIORITIES = ("low", "normal", "critical")

_lock = threading.Lock()
_latency_ms = 0.0


def _read_depth() -> int:
    """Tasks waiting in the broker; 0 when it cannot be read (the broker's breaker and the re-drive
    sweeps cover a broker that is down: it is no reason to shed)."""
    return task_queue_depth() or 0


def _read_lag() -> float:
    """The publish lag; 0 when it cannot be read (the database breaker answers for a database that
    is down). Gives the connection back to the pool: this runs on its own thread."""
    try:
        return comments_pending_oldest_age()
    except DatabaseError:
        return 0.0
    finally:
        connection.close()


class SheddingSignals:
    """The shedding signals that cost I/O, refreshed every ``REFRESH_SECONDS`` by one thread per
    process: a check reads two numbers and never waits on Redis or PostgreSQL, so it is as cheap
    on the event loop (the tap fast lane, socket frames) as in a request thread.

    The gateway app adds it to the node (``realtime.node``), which starts and stops the thread.
    """

    def __init__(self) -> None:
        self.depth = 0
        self.lag = 0.0
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._refresh_forever, name="chorus-shedding-signals", daemon=True)
            self._thread.start()

    async def stop(self) -> None:
        self._stopping.set()  # the thread ends within REFRESH_SECONDS (or with the process: a daemon)

    def _refresh_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self.depth, self.lag = _read_depth(), _read_lag()
            except Exception:  # never let the signals die: a stale 0 only means "do not shed"
                logger.exception("could not refresh the shedding signals")
            self._stopping.wait(REFRESH_SECONDS)


def queue_depth() -> int:
    """Tasks waiting in the broker, as of at most ``REFRESH_SECONDS`` ago."""
    return node.part(SheddingSignals).depth


def publish_lag() -> float:
    """Seconds the oldest comment has waited for publication, as of at most ``REFRESH_SECONDS`` ago."""
    return node.part(SheddingSignals).lag


def latency_record(*, milliseconds: float) -> None:
    """Feed one API request's duration into this node's moving average."""
    global _latency_ms
    with _lock:
        _latency_ms += LATENCY_WEIGHT * (milliseconds - _latency_ms)


def load_shed_check(*, priority: str) -> int | None:
    """``None`` to go ahead, else the seconds a client should wait (answer 503 / an error frame)."""
    if priority == "critical":
        return None
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    low = priority == "low"
    factor = 1 if low else 2
    depth_limit = settings.CHORUS_SHED_QUEUE_LOW if low else settings.CHORUS_SHED_QUEUE_HIGH
    lag_limit = settings.CHORUS_SHED_PUBLISH_LAG_LOW if low else settings.CHORUS_SHED_PUBLISH_LAG_HIGH
    if (
        publish_lag() >= lag_limit
        or queue_depth() >= depth_limit
        or _latency_ms >= settings.CHORUS_SHED_LATENCY_MS * factor
    ):
        logger.info(
            "shedding %s-priority work (publish lag %.1f s, queue %s, latency %.0f ms)",
            priority,
            publish_lag(),
            queue_depth(),
            _latency_ms,
        )
        return SHED_RETRY_AFTER
    return None
