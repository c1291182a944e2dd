"""Coarse per-IP limits (django-ratelimit) on the sign-in endpoints (token, login page, admin login).

django-ratelimit is a fixed window counted in the ``ratelimit`` Redis cache; its decorator is
synchronous, so it wraps sync views only. With the cache unreachable it fails closed (429).
"""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django_ratelimit.core import _split_rate
from django_ratelimit.decorators import ratelimit


def ip_rate_limited(view: Callable[..., HttpResponseBase], *, group: str) -> Callable[..., HttpResponseBase]:
    """Refuse POSTs beyond ``CHORUS_ANON_AUTH_RATE`` per client address with a JSON 429.

    ``group`` names the counter: each endpoint has its own.
    """

    _, window_seconds = _split_rate(settings.CHORUS_ANON_AUTH_RATE)

    @wraps(view)
    @ratelimit(group=group, key="ip", rate=settings.CHORUS_ANON_AUTH_RATE, method="POST", block=False)
    def limited(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        if getattr(request, "limited", False):
            response = JsonResponse(
                {"code": "throttled", "detail": "Too many attempts from this address, try again later."}, status=429
            )
            # A fixed window: at worst the whole window must pass.
            response["Retry-After"] = str(window_seconds)
            return response
        return view(request, *args, **kwargs)

    return limited
