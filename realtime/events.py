"""The only code that publishes to the real-time tier.

An event is published as ``"<seq>\\n<frame>"`` on its stream's Redis channel: every node decodes
the sequence number once and forwards the pre-encoded frame to its local subscribers untouched.
Publishing is best effort by design: a lost publish is repaired by every node from the event log
(gap detection and the periodic tail check in ``realtime.hub``), never trusted to arrive.
"""

import logging
from functools import lru_cache

import redis
from django.conf import settings

from realtime.channels import stream_channel

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    # redis-py pools reset themselves after fork, so one client per process is safe in Celery.
    return redis.Redis.from_url(settings.CHORUS_REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def encode_published(seq: int, frame: str) -> bytes:
    return f"{seq}\n{frame}".encode()


def decode_published(message: bytes) -> tuple[int, str]:
    head, _, frame = message.partition(b"\n")
    return int(head), frame.decode()


def event_broadcast(*, stream_id: int, seq: int, frame: str) -> None:
    """Publish an already-committed event to every node; never raises."""
    try:
        _redis().publish(stream_channel(stream_id), encode_published(seq, frame))
    except redis.RedisError:
        logger.warning("publish of stream %s #%s failed; nodes will repair from the event log", stream_id, seq)
