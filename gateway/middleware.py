"""Per-request gateway work around every view: the ``RateLimit-*`` headers of the decision a
throttle made for this request."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from gateway.headers import rate_limit_headers_apply


class GatewayMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        decision = getattr(request, "rate_limit", None)
        if decision is not None:
            rate_limit_headers_apply(response, decision)
        return response
