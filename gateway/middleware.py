"""Per-request gateway work around every view.

- adds the ``RateLimit-*`` headers of the decision a throttle made for this request;
- the database circuit breaker: while it is open, API requests get an immediate 503 with
  ``Retry-After`` instead of each waiting for a connection timeout; a database error from a view
  counts as a failure and is answered the same way. A request that found the node's own
  connection pool busy (``PoolTimeout``) is refused with 503 too, but says nothing about the
  database, so it does not count;
- records API latency for load shedding (``gateway.overload``);
- opens the request's database routing scope (``gateway.db_router``: read-your-writes).
"""

import contextlib
import time
from collections.abc import Callable

import pybreaker
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.http import HttpRequest, HttpResponse

from gateway.db_router import request_scope_enter, request_scope_exit
from gateway.headers import rate_limit_headers_apply
from gateway.overload import latency_record
from project.api_errors import StoreUnavailable, answer_of, error_answer, pool_exhausted
from project.breakers import breaker_retry_after, database_breaker

GUARDED_PREFIXES = ("/api/", "/internal/")


def _database_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _nothing() -> None:
    return None


def _reraise(exc: Exception) -> None:
    raise exc


class GatewayMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        guarded = request.path.startswith(GUARDED_PREFIXES)
        if guarded and database_breaker.current_state != pybreaker.STATE_CLOSED:
            # Open: fails at once. Half-open (reset time passed): one cheap probe decides.
            try:
                database_breaker.call(_database_ping)
            except (pybreaker.CircuitBreakerError, DatabaseError):
                return answer_of(StoreUnavailable("database", breaker_retry_after(database_breaker))).response()
        started = time.monotonic()
        scope = request_scope_enter(request)
        try:
            response = self.get_response(request)
        finally:
            request_scope_exit(scope)
        if guarded:
            latency_record(milliseconds=(time.monotonic() - started) * 1000)
            if (
                database_breaker.fail_counter
                and response.status_code < 500
                and database_breaker.current_state == pybreaker.STATE_CLOSED
            ):
                # Failures count only while consecutive: a success resets the breaker's counter.
                # Only a closed breaker is reset here: an open one refuses the call (a request that
                # started before it opened must not turn its own answer into a 500), and the
                # half-open trial belongs to the ping above.
                with contextlib.suppress(pybreaker.CircuitBreakerError):
                    database_breaker.call(_nothing)
        decision = getattr(request, "rate_limit", None)
        if decision is not None:
            rate_limit_headers_apply(response, decision)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not request.path.startswith(GUARDED_PREFIXES) or not isinstance(
            exception, (OperationalError, InterfaceError)
        ):
            return None
        if not pool_exhausted(exception):  # a busy pool says nothing about the database
            with contextlib.suppress(pybreaker.CircuitBreakerError, DatabaseError):
                database_breaker.call(_reraise, exception)
        answer = error_answer(exception)  # after the breaker counted it: its Retry-After
        return answer.response() if answer is not None else None
