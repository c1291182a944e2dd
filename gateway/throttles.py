"""DRF throttles over ``rate_limit_check``; ``GatewayThrottle`` is the default of every API view.

Every view that writes is limited unless it says otherwise: ``GatewayThrottle`` is in
``REST_FRAMEWORK["DEFAULT_THROTTLE_CLASSES"]`` and spends, for each unsafe request, a token of the
view's ``rate_limit_service`` (``writes`` unless the view names another, e.g. ``comments``), and
for each anonymous read a token of its address's ``reads`` bucket (a crawler must not be able to
walk the database, or fill the page cache, at will). A view opts out only by naming its own
``throttle_classes`` (the internal API has its own bucket).

A refusal raises DRF's ``Throttled`` (429, ``Retry-After``, the JSON error body); the decision is
kept on the request so ``gateway.middleware`` adds the ``RateLimit-*`` headers to every answer. An
unreachable limiter (``RateLimiterUnavailable``) and shedding (``Overloaded``) answer 503 through
``project.api_errors``' table.
"""

import math
from typing import TYPE_CHECKING

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from gateway.overload import load_shed_check
from project.api_errors import Overloaded
from project.ratelimit import RateDecision, keys, rate_limit_check

if TYPE_CHECKING:  # rest_framework.views imports this module (DEFAULT_THROTTLE_CLASSES) while it loads
    from rest_framework.views import APIView


def request_subject(request: Request) -> str:
    """The authenticated user, else the client address (``REMOTE_ADDR``: proxies are not trusted)."""
    if request.user and request.user.is_authenticated:
        return keys.user_subject(request.user.pk)
    return keys.ip_subject(request.META.get("REMOTE_ADDR", "unknown"))


UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_SERVICE = "writes"


class GatewayThrottle(BaseThrottle):
    """For unsafe methods: load shedding by the view's ``rate_limit_priority`` (``normal``), then a
    token of the view's ``rate_limit_service`` (``writes``) from the request subject's bucket.
    For safe methods: a ``reads`` token of the client address when anonymous (never shed)."""

    def allow_request(self, request: Request, view: "APIView") -> bool:
        if request.method not in UNSAFE_METHODS:
            if request.user and request.user.is_authenticated:
                return True
            service = "reads"
        else:
            shed = load_shed_check(priority=getattr(view, "rate_limit_priority", "normal"))
            if shed is not None:
                raise Overloaded(shed)
            service = getattr(view, "rate_limit_service", DEFAULT_SERVICE)
        decision = rate_limit_check(subject=request_subject(request), service=service)
        self.decision: RateDecision = decision
        # For the RateLimit headers (gateway.middleware); Django's request declares no such attribute.
        request._request.rate_limit = decision  # type: ignore[attr-defined]
        return decision.allowed

    def wait(self) -> float | None:
        return max(1, math.ceil(self.decision.retry_after))


class InternalThrottle(GatewayThrottle):
    """The internal API's own bucket, for every method: one subject for the calling service, always
    the internal tier."""

    def allow_request(self, request: Request, view: "APIView") -> bool:
        decision = rate_limit_check(subject="service:internal", service="internal", tier="internal")
        self.decision = decision
        # For the RateLimit headers (gateway.middleware); Django's request declares no such attribute.
        request._request.rate_limit = decision  # type: ignore[attr-defined]
        return decision.allowed
