"""DRF throttles over ``rate_limit_check``: add ``throttle_classes = [CommentsThrottle]`` to a view.

A refusal raises DRF's ``Throttled`` (429, ``Retry-After``, the JSON error body); the decision is
kept on the request so ``gateway.middleware`` adds the ``RateLimit-*`` headers to every answer.
"""

import math

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.views import APIView

from gateway import keys
from gateway.overload import load_shed_check
from gateway.services import RateDecision, RateLimiterUnavailable, rate_limit_check
from project.api_errors import ServiceUnavailable


class LimiterUnavailable(ServiceUnavailable):
    """503 with ``Retry-After`` (DRF's handler sets it from ``wait``)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("Rate limiter unavailable, try again later.")
        self.wait = retry_after


def request_subject(request: Request) -> str:
    """The authenticated user, else the client address (``REMOTE_ADDR``: proxies are not trusted)."""
    if request.user and request.user.is_authenticated:
        return keys.user_subject(request.user.pk)
    return keys.ip_subject(request.META.get("REMOTE_ADDR", "unknown"))


class Overloaded(ServiceUnavailable):
    """503 with ``Retry-After``: work of this priority is being shed."""

    default_code = "overloaded"

    def __init__(self, retry_after: int) -> None:
        super().__init__("The service is overloaded, try again shortly.", code="overloaded")
        self.wait = retry_after


class GatewayThrottle(BaseThrottle):
    """Load shedding by ``priority``, then the token bucket of ``service`` per request subject,
    for the unsafe methods only."""

    service = ""
    priority = "normal"
    methods = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def allow_request(self, request: Request, view: APIView) -> bool:
        if request.method not in self.methods:
            return True
        shed = load_shed_check(priority=self.priority)
        if shed is not None:
            raise Overloaded(shed)
        try:
            decision = rate_limit_check(subject=request_subject(request), service=self.service)
        except RateLimiterUnavailable as exc:
            raise LimiterUnavailable(exc.retry_after) from None
        self.decision: RateDecision = decision
        request._request.rate_limit = decision
        return decision.allowed

    def wait(self) -> float | None:
        return max(1, math.ceil(self.decision.retry_after))


class CommentsThrottle(GatewayThrottle):
    service = "comments"


class ReactionsThrottle(GatewayThrottle):
    service = "reactions"
    priority = "low"


class InternalThrottle(GatewayThrottle):
    """The internal API's own bucket: one subject for the calling service, always the internal tier."""

    service = "internal"
    methods = frozenset({"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"})

    def allow_request(self, request: Request, view: APIView) -> bool:
        try:
            decision = rate_limit_check(subject="service:internal", service=self.service, tier="internal")
        except RateLimiterUnavailable as exc:
            raise LimiterUnavailable(exc.retry_after) from None
        self.decision = decision
        request._request.rate_limit = decision
        return decision.allowed
