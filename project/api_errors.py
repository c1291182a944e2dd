"""One JSON error shape for the whole API, and one table from exception to answer.

The shape is ``{"code": ..., "detail": ..., "fields": {...}}``; ``fields`` (present for validation
errors) maps each offending field, query parameter or header to its messages, so a client can
always tell what was wrong.

Every path that answers an error asks ``error_answer`` (status, body, headers): DRF views through
``api_exception_handler``, the pure-ASGI fast lane (``gateway/fast_lane.py``), the request-thread
guard (``project/asgi_handler.py``) and the middlewares (``project/middleware.py``,
``gateway/middleware.py``). DRF's ``APIException``s answer as themselves; any other exception
answers through ``ERROR_TABLE``: the platform's entries are below, a domain app adds its own with
``error_mapping`` next to its views. "A backing store is down" is ``StoreUnavailable``: 503, one
wording, ``Retry-After``.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection
from django.http import HttpRequest, JsonResponse
from psycopg_pool import PoolTimeout
from redis.exceptions import RedisError
from rest_framework import exceptions, status
from rest_framework.response import Response

from project.breakers import breaker_retry_after, database_breaker
from project.ratelimit import RateLimiterUnavailable


class ServiceUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "Service temporarily unavailable, try again later."
    default_code = "service_unavailable"


class StoreUnavailable(ServiceUnavailable):
    """A backing store (the database, the limiter's or the reactions' Redis) is down: nothing was
    done; the client retries after ``Retry-After`` (with the same ``Idempotency-Key``)."""

    def __init__(self, what: str, retry_after: int | None = None) -> None:
        super().__init__(f"The {what} is unavailable; nothing was done. Try again later.")
        self.wait = retry_after if retry_after is not None else settings.CHORUS_RETRY_AFTER_SECONDS


class Overloaded(ServiceUnavailable):
    """503 with ``Retry-After``: this node is too busy for the request (shed, no thread free, its
    connection pool busy); nothing was accepted."""

    default_code = "overloaded"

    def __init__(self, retry_after: int | None = None) -> None:
        super().__init__("The service is overloaded, try again shortly.", code="overloaded")
        self.wait = retry_after if retry_after is not None else settings.CHORUS_RETRY_AFTER_SECONDS


class Conflict(exceptions.APIException):
    """409: the request is valid but the resource's state refuses it (``code`` says which)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "Conflict with the resource's current state."
    default_code = "conflict"


@dataclass(frozen=True)
class ErrorAnswer:
    """A finished error answer, for paths that write their own responses."""

    status: int
    body: dict[str, Any]
    headers: tuple[tuple[str, str], ...] = ()

    def response(self) -> JsonResponse:
        response = JsonResponse(self.body, status=self.status)
        for name, value in self.headers:
            response[name] = value
        return response

    def body_bytes(self) -> bytes:
        return json.dumps(self.body, separators=(",", ":"), ensure_ascii=False).encode()


E = TypeVar("E", bound=BaseException)
ERROR_TABLE: dict[type[BaseException], Callable[[Any], exceptions.APIException]] = {}


def error_mapping(exc_type: type[E], to: Callable[[E], exceptions.APIException]) -> None:
    """Answer ``exc_type`` (and its subclasses) as the ``APIException`` ``to`` makes of it."""
    ERROR_TABLE[exc_type] = to


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


def _database_error(exc: DatabaseError | InterfaceError) -> exceptions.APIException:
    if pool_exhausted(exc):
        return Overloaded()  # the node is busy, the database is fine
    return StoreUnavailable("database", breaker_retry_after(database_breaker))


error_mapping(DatabaseError, _database_error)
error_mapping(InterfaceError, _database_error)  # not a DatabaseError in Django
error_mapping(RateLimiterUnavailable, lambda exc: StoreUnavailable("rate limiter", exc.retry_after))
error_mapping(RedisError, lambda exc: StoreUnavailable("Redis store"))


def api_exception(exc: BaseException) -> exceptions.APIException | None:
    """What ``exc`` answers as: itself, its entry in ``ERROR_TABLE``, or None (a 500)."""
    if isinstance(exc, exceptions.APIException):
        return exc
    for cls in type(exc).__mro__:
        if (to := ERROR_TABLE.get(cls)) is not None:
            return to(exc)
    return None


def _first_code(codes: Any) -> str:
    if isinstance(codes, str):
        return codes
    if isinstance(codes, list) and codes:
        return _first_code(codes[0])
    if isinstance(codes, dict) and codes:
        return _first_code(next(iter(codes.values())))
    return "error"


def error_body(exc: exceptions.APIException) -> dict[str, Any]:
    if isinstance(exc, exceptions.ValidationError):
        fields = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        names = ", ".join(fields)
        return {"code": "invalid", "detail": f"Invalid input: {names}.", "fields": fields}
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    return {"code": _first_code(exc.get_codes()), "detail": detail}


def error_answer(exc: BaseException) -> ErrorAnswer | None:
    """The answer to ``exc``, or None for a 500."""
    api = api_exception(exc)
    return answer_of(api) if api is not None else None


def answer_of(api: exceptions.APIException) -> ErrorAnswer:
    """The answer DRF's handler gives ``api``: its status, the JSON body and its headers."""
    headers = []
    if auth_header := getattr(api, "auth_header", None):
        headers.append(("WWW-Authenticate", auth_header))
    if wait := getattr(api, "wait", None):
        headers.append(("Retry-After", str(int(wait))))
    return ErrorAnswer(api.status_code, error_body(api), tuple(headers))


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER``: the table's answer in DRF's response.

    Database errors are left to the middleware, which counts them on the database's circuit
    breaker before answering from this same table.
    """
    # Imported here: rest_framework.views loads the default throttles, which import this module.
    from rest_framework.views import exception_handler

    if isinstance(exc, DatabaseError | InterfaceError):
        return None
    api = api_exception(exc)
    response = exception_handler(api if api is not None else exc, context)
    if response is None or api is None:
        return response
    response.data = error_body(api)
    return response


def too_large(limit: int) -> dict[str, str]:
    """The error of a 413: the request body is over ``limit`` bytes (nothing was read past it, so
    the answer closes the connection)."""
    return {"code": "too_large", "detail": f"The request body is over {limit} bytes."}


def too_large_body(limit: int) -> bytes:
    return json.dumps(too_large(limit)).encode()


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse({"code": "not_found", "detail": f"No such path: {request.path}"}, status=404)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"code": "server_error", "detail": "Internal server error."}, status=500)
