"""How many tasks wait in the Celery broker: the one reader of queue depth.

Load shedding (``gateway/overload.py``) and ``/metrics`` both ask here. A Redis broker is read with
one ``LLEN`` pipeline over a short-timeout client; any other broker (RabbitMQ) with a passive queue
declare. Both go through the broker's circuit breaker, so a dead broker costs one timeout per reset
period, not one per read.
"""

import contextlib
import logging
from collections.abc import Sequence

import pybreaker
import redis
from celery import current_app
from django.conf import settings

from project.breakers import broker_breaker
from project.redis import redis_client

logger = logging.getLogger(__name__)


def _redis_broker() -> redis.Redis | None:
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return None
    return redis_client("broker")


def _redis_depth(client: redis.Redis, queues: Sequence[str]) -> int:
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
        return sum(pipe.execute())


def _amqp_depth(queues: Sequence[str]) -> int:
    from amqp.exceptions import NotFound as AmqpNotFound
    from kombu.exceptions import ChannelError as KombuChannelError

    total = 0
    with current_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)  # a reader must not hang on a dead broker
        for queue in queues:
            with contextlib.suppress(KombuChannelError, AmqpNotFound):  # no such queue yet: nothing waits
                # kombu's stubs type the channel as StdChannel, which declares nothing; AMQP's channel does.
                total += conn.default_channel.queue_declare(queue=queue, passive=True).message_count  # type: ignore[attr-defined]
    return total


def task_queue_depth() -> int | None:
    """Tasks waiting in the task queues (``CHORUS_SHED_QUEUES``); ``None`` when the broker cannot be read.

    Blocking I/O (at most a fraction of a second on Redis, two seconds elsewhere): call it off the
    event loop.
    """
    queues = settings.CHORUS_SHED_QUEUES
    client = _redis_broker()
    try:
        if client is not None:
            return int(broker_breaker.call(_redis_depth, client, queues))
        return int(broker_breaker.call(_amqp_depth, queues))
    except pybreaker.CircuitBreakerError:
        return None
    except Exception as exc:  # the broker's own errors vary by transport
        logger.warning("celery queue depth unavailable: %s", exc)
        return None
