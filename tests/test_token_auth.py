"""Token authentication on the REST API: the lookup is cached per process, its answers are DRF's."""

import httpx
from django.conf import settings
from rest_framework.authtoken.models import Token

from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.support.api import post_comment
from tests.support.processes import wait_until


def test_a_deleted_token_or_deactivated_user_is_refused_within_the_cache_bound(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """A cached token keeps working at most CHORUS_TOKEN_CACHE_SECONDS after it is deleted; then 401."""
    node = live.nodes[0].http
    bound = settings.CHORUS_TOKEN_CACHE_SECONDS + 5
    assert post_comment(http, node, stream.slug, api_user.headers, "cached now").status_code == 202

    # when: the user is deactivated, then (with a new token) the token is deleted
    api_user.user.is_active = False
    api_user.user.save(update_fields=["is_active"])

    def refused() -> httpx.Response | None:
        response = post_comment(http, node, stream.slug, api_user.headers, "refused?")
        return response if response.status_code == 401 else None

    # then: the same answers as DRF's TokenAuthentication, once the cached lookup has expired
    inactive = wait_until(refused, timeout=bound, interval=0.2, what="the inactive user's token to be 401")
    assert inactive.json() == {"code": "authentication_failed", "detail": "User inactive or deleted."}
    assert inactive.headers["WWW-Authenticate"] == "Token"

    api_user.user.is_active = True
    api_user.user.save(update_fields=["is_active"])
    wait_until(
        lambda: post_comment(http, node, stream.slug, api_user.headers, "back").status_code == 202,
        timeout=5,
        what="the active user's token to work again at once (failures are not cached)",
    )
    Token.objects.filter(key=api_user.token).delete()
    deleted = wait_until(refused, timeout=bound, interval=0.2, what="the deleted token to be 401")
    assert deleted.json() == {"code": "authentication_failed", "detail": "Invalid token."}
