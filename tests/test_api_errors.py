"""The one table from exception to answer (``project/api_errors.py``): what each failure answers,
and that no other module builds a 503 body of its own."""

from pathlib import Path

import pytest
from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework import exceptions

import reactions.api  # noqa: F401 (the URLconf loads it: it maps TapLimited)
import sagas.api  # noqa: F401 (and this one NothingToRetry)
from project.api_errors import api_exception_handler, error_answer
from project.group_commit import NoThreadFree
from project.ratelimit import RateLimiterUnavailable
from reactions.services.taps import TapLimited
from sagas.services import NothingToRetry

ROOT = Path(__file__).resolve().parent.parent
STORE_DOWN = "is unavailable; nothing was done. Try again later."


def _shape(exc: BaseException) -> tuple[int, str, dict[str, str]]:
    answer = error_answer(exc)
    assert answer is not None, exc
    return answer.status, answer.body["code"], dict(answer.headers)


@pytest.mark.parametrize(
    ("exc", "what"),
    [
        (OperationalError("connection refused"), "database"),
        (InterfaceError("connection already closed"), "database"),
        (RateLimiterUnavailable(7), "rate limiter"),
        (RedisConnectionError("refused"), "Redis store"),
    ],
)
def test_a_store_down_is_one_503_with_one_wording_and_retry_after(exc: BaseException, what: str) -> None:
    status, code, headers = _shape(exc)
    assert (status, code) == (503, "service_unavailable")
    assert int(headers["Retry-After"]) >= 1
    answer = error_answer(exc)
    assert answer is not None
    assert answer.body["detail"] == f"The {what} {STORE_DOWN}"


def test_the_limiter_says_when_it_may_be_back() -> None:
    assert _shape(RateLimiterUnavailable(7))[2]["Retry-After"] == "7"


def test_overload_and_domain_refusals() -> None:
    assert _shape(NoThreadFree())[:2] == (503, "overloaded")
    assert _shape(TapLimited(0.2)) == (429, "rate_limited", {"Retry-After": "1"})
    refused = NothingToRetry("saga is running: nothing failed that can be retried")
    assert _shape(refused)[:2] == (409, "nothing_to_retry")
    assert _shape(exceptions.NotFound("No stream 'x'."))[:2] == (404, "not_found")


def test_anything_else_is_a_500() -> None:
    assert error_answer(ValueError("bug")) is None


def test_drf_views_leave_database_errors_to_the_middleware() -> None:
    """The middleware counts a database failure on the circuit breaker before answering it."""
    assert api_exception_handler(OperationalError("down"), {}) is None


def test_no_module_builds_a_503_body_of_its_own() -> None:
    builders = [
        path.relative_to(ROOT)
        for package in ("project", "gateway", "comments", "reactions", "realtime", "sagas", "delivery")
        for path in (ROOT / package).rglob("*.py")
        if '"service_unavailable"' in path.read_text() and path.name != "api_errors.py"
    ]
    assert builders == []
