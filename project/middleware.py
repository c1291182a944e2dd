"""Turn "a backing service is down" into a clear, retryable answer instead of a 500."""

import logging
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from project.api_errors import error_answer, pool_exhausted

logger = logging.getLogger(__name__)


class ServiceUnavailableMiddleware:
    """A request that fails because PostgreSQL is unreachable gets 503 with Retry-After
    (``project.api_errors``: the store is down, or this node's connection pool is busy).

    Nothing was accepted: the client should retry (with the same Idempotency-Key).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        if not pool_exhausted(exception):
            logger.error("database unavailable for %s %s: %s", request.method, request.path, exception)
        answer = error_answer(exception)
        return answer.response() if answer is not None else None
