"""Tiers pinned by an admin, and the per-IP limit on anonymous sign-in endpoints."""

import time
import uuid

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django_ratelimit.core import _get_window

from gateway.models import UserTier
from gateway.selectors import user_tier_current
from project.ratelimit import keys, limiter_redis, rate_limit_check
from tests.factories import UserFactory


@pytest.mark.django_db(transaction=True)
def test_admin_pin_applies_to_the_next_check_and_unpin_restores_automatic_tier() -> None:
    """Pinning in the admin changes the limits at once; deleting the pin hands back to adaptation."""
    # given: an admin and a regular user
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests")
    user = UserFactory.create()
    client = Client()
    client.force_login(admin)
    subject = keys.user_subject(user.pk)
    assert rate_limit_check(subject=subject, service="comments").tier == "regular"

    # when: the admin pins the user as trusted
    response = client.post(
        "/admin/gateway/usertier/add/", {"user": user.pk, "tier": "trusted", "pinned": "on", "note": "partner"}
    )
    assert response.status_code == 302, response.content[:500]

    # then: the next check uses the trusted limits
    decision = rate_limit_check(subject=subject, service="comments")
    assert decision.tier == "trusted"
    assert user_tier_current(user_id=user.pk) == "trusted"

    # when: the admin changes the pin, the change applies at once too
    row = UserTier.objects.get(user=user)
    changed = client.post(f"/admin/gateway/usertier/{row.pk}/change/", {"tier": "hot", "pinned": "on", "note": ""})
    assert changed.status_code == 302, changed.content[:500]
    assert rate_limit_check(subject=subject, service="comments").tier == "hot"

    # when: the pin is deleted, the automatic tier applies again
    assert client.post(f"/admin/gateway/usertier/{row.pk}/delete/", {"post": "yes"}).status_code == 302
    assert limiter_redis().get(keys.pin_key(subject=subject)) is None
    assert rate_limit_check(subject=subject, service="comments").tier == "regular"


@pytest.mark.django_db(transaction=True)
def test_anonymous_token_endpoint_is_limited_per_ip_with_a_json_429() -> None:
    """django-ratelimit refuses the 11th sign-in attempt a minute from one address."""
    # A fixed window restarts at its edge (each address has its own offset): use an address whose
    # current window has seconds left, so the 11 attempts fall into one window.
    address = next(f"203.0.113.{i}" for i in range(1, 255) if _get_window(f"203.0.113.{i}", 60) - time.time() > 5)
    client = Client(REMOTE_ADDR=address)
    statuses = [
        client.post("/api/v1/auth/token", {"username": "nobody", "password": "x"}, content_type="application/json")
        for _ in range(11)
    ]
    assert [r.status_code for r in statuses] == [400] * 10 + [429]
    assert statuses[-1].json()["code"] == "throttled"
    assert statuses[-1]["Retry-After"] == "60"  # the window of the default 10/m
    # another address is not affected
    other = Client(REMOTE_ADDR="198.51.100.1").post(
        "/api/v1/auth/token", {"username": "nobody", "password": "x"}, content_type="application/json"
    )
    assert other.status_code == 400


def test_a_hammering_user_is_moved_to_the_stricter_hot_limits() -> None:
    """Past the hot threshold the same user's next checks report the hot tier's smaller capacity."""
    subject = f"user:hammer-{uuid.uuid4().hex[:8]}"
    limits = {tier: dict(services) for tier, services in settings.CHORUS_RATE_LIMITS.items()}
    limits["regular"]["comments"], limits["hot"]["comments"] = (50, 1), (3, 0.1)
    with override_settings(CHORUS_RATE_LIMITS=limits, CHORUS_TIER_HOT_ABOVE=2.0, CHORUS_TIER_WINDOW_SECONDS=10.0):
        decisions = [rate_limit_check(subject=subject, service="comments") for _ in range(30)]
    tiers = [d.tier for d in decisions]
    # 2/s over a 10 s window is a decayed count of 20: the 21st request makes the user hot
    assert tiers[:20] == ["regular"] * 20
    assert set(tiers[21:]) == {"hot"}
    assert decisions[-1].limit == 3
    assert not decisions[-1].allowed  # 20 tokens were spent from a bucket now capped at 3
