"""The ``RateLimit-*`` response headers (IETF draft "RateLimit header fields for HTTP")."""

import math

from django.http import HttpResponse

from project.ratelimit import RateDecision


def rate_limit_header_pairs(decision: RateDecision) -> list[tuple[str, str]]:
    """The headers as (name, value) pairs; none when the limiter failed open. Also used by pure-ASGI handlers."""
    if decision.limit is None:
        return []
    return [
        ("RateLimit-Limit", str(decision.limit)),
        ("RateLimit-Remaining", str(max(0, decision.remaining or 0))),
        ("RateLimit-Reset", str(math.ceil(decision.reset_after))),
    ]


def rate_limit_headers_apply(response: HttpResponse, decision: RateDecision) -> None:
    for name, value in rate_limit_header_pairs(decision):
        response[name] = value
