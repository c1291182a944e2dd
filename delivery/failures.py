"""Per-message failure history (attempts, first and last failure, the last exception).

Kept in Redis under the Celery task id while a task is being retried, because a dead letter
routed by the broker (RabbitMQ's dead-letter exchange) carries the message but not why it failed.
Best effort: losing this history never loses the message itself.
"""

import logging
import traceback as traceback_module
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

from project.redis import redis_client, redis_text

logger = logging.getLogger(__name__)

TTL_SECONDS = 7 * 24 * 3600


def _redis() -> redis.Redis:
    return redis_client("data")


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _key(message_id: str) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:task-failure:{message_id}"


def describe_failure(exc: BaseException, *, attempts: int, first_failed_at: str | None = None) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {
        "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "exception_message": str(exc)[:4000],
        "traceback": "".join(traceback_module.format_exception(exc))[-20000:],
        "attempts": attempts,
        "first_failed_at": first_failed_at or now,
        "last_failed_at": now,
    }


def failure_note(*, message_id: str, exc: BaseException, attempts: int) -> dict[str, Any]:
    """Record one failed attempt and return the accumulated description."""
    first = None
    try:
        first = _text(_redis().hget(_key(message_id), "first_failed_at"))
    except redis.RedisError:
        logger.warning("could not read failure history of %s", message_id)
    details = describe_failure(exc, attempts=attempts, first_failed_at=first)
    try:
        pipe = _redis().pipeline()
        pipe.hset(_key(message_id), mapping={k: str(v) for k, v in details.items()})
        pipe.expire(_key(message_id), TTL_SECONDS)
        pipe.execute()
    except redis.RedisError:
        logger.warning("could not record failure history of %s", message_id)
    return details


def failure_lookup(*, message_id: str) -> dict[str, Any]:
    try:
        return {redis_text(k): redis_text(v) for k, v in _redis().hgetall(_key(message_id)).items()}
    except redis.RedisError:
        return {}
