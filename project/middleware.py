"""Turn "a backing service is down" into a clear, retryable answer instead of a 500."""

import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from psycopg_pool import PoolTimeout

from project.api_errors import overloaded_response

logger = logging.getLogger(__name__)


def pool_exhausted(exception: BaseException | None) -> bool:
    """The error is this process waiting too long for a pooled connection, not the database failing.

    The answer is still 503 with ``Retry-After``, but as overload: it must not count towards the
    database's circuit breaker, or a busy node would report a healthy database as down. A pool that
    times out while it holds fewer connections than it may is failing to connect: that is the
    database's failure, and counts.
    """
    while exception is not None and not isinstance(exception, PoolTimeout):
        exception = exception.__cause__
    if exception is None:
        return False
    pool = getattr(connection, "pool", None)
    if pool is None:
        return False
    stats = pool.get_stats()
    return stats.get("pool_size", 0) >= pool.max_size and not stats.get("pool_available", 0)


class ServiceUnavailableMiddleware:
    """A request that fails because PostgreSQL is unreachable gets 503 with Retry-After.

    Nothing was accepted: the client should retry (with the same Idempotency-Key).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        if pool_exhausted(exception):
            return overloaded_response()  # the node is busy, the database is fine
        logger.error("database unavailable for %s %s: %s", request.method, request.path, exception)
        response = JsonResponse(
            {
                "code": "service_unavailable",
                "detail": "The database is unavailable; nothing was accepted. Retry later.",
            },
            status=503,
        )
        response["Retry-After"] = str(settings.CHORUS_RETRY_AFTER_SECONDS)
        return response
