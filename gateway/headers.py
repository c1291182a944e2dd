"""The ``RateLimit-*`` response headers (IETF draft "RateLimit header fields for HTTP")."""

import math

from django.http import HttpResponse

from gateway.services import RateDecision


def rate_limit_headers_apply(response: HttpResponse, decision: RateDecision) -> None:
    if decision.limit is None:
        return
    response["RateLimit-Limit"] = str(decision.limit)
    response["RateLimit-Remaining"] = str(max(0, decision.remaining or 0))
    response["RateLimit-Reset"] = str(math.ceil(decision.reset_after))
