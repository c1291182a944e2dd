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
import os
import threading
import time

from django.conf import settings
from django.db import DatabaseError, connection

from comments.selectors import comments_pending_oldest_age
from project.queues import task_queue_depth

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


class _Signals:
    """The shedding signals that cost I/O, refreshed every ``REFRESH_SECONDS`` by one thread per
    process: a check reads two numbers and never waits on Redis or PostgreSQL, so it is as cheap
    on the event loop (the tap fast lane, socket frames) as in a request thread."""

    def __init__(self) -> None:
        self.depth = 0
        self.lag = 0.0
        self._pid = 0

    def ensure_running(self) -> None:
        if self._pid == os.getpid():
            return
        with _lock:
            if self._pid == os.getpid():  # a forked child has no copy of its parent's thread
                return
            self._pid = os.getpid()
            threading.Thread(target=self._refresh_forever, name="chorus-shedding-signals", daemon=True).start()

    def _refresh_forever(self) -> None:
        while True:
            try:
                self.depth, self.lag = _read_depth(), _read_lag()
            except Exception:  # never let the signals die: a stale 0 only means "do not shed"
                logger.exception("could not refresh the shedding signals")
            time.sleep(REFRESH_SECONDS)


_signals = _Signals()


def queue_depth() -> int:
    """Tasks waiting in the broker, as of at most ``REFRESH_SECONDS`` ago."""
    _signals.ensure_running()
    return _signals.depth


def publish_lag() -> float:
    """Seconds the oldest comment has waited for publication, as of at most ``REFRESH_SECONDS`` ago."""
    _signals.ensure_running()
    return _signals.lag


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
            _signals.lag,
            _signals.depth,
            _latency_ms,
        )
        return SHED_RETRY_AFTER
    return None
