"""Gateway writes: pin users' tiers, admit WebSocket frames, the system user.

The limiter itself is platform (``project/ratelimit``): the DRF throttle in ``gateway.throttles``,
the fast lane, the WebSocket frame admission here and the taps all use it.
"""

import logging
from typing import Any

from django.db import transaction

from gateway.models import Tier, UserTier
from gateway.overload import load_shed_check
from project.ratelimit import RateLimiterUnavailable, keys, limiter_redis, rate_limit_check
from realtime.extensions import FrameRefusal

logger = logging.getLogger(__name__)


def user_tier_set(*, user_id: int, tier: str, pinned: bool, note: str = "") -> UserTier:
    """Record an admin's tier for a user and mirror the pin into Redis (where the script reads it).

    The Redis copy is written after commit; if Redis is down then, ``gateway_pins_sync`` (a
    management command) rewrites every pin from the database.
    """
    if tier not in Tier.values:
        raise ValueError(f"unknown tier {tier!r}")
    with transaction.atomic():
        row, _ = UserTier.objects.update_or_create(
            user_id=user_id, defaults={"tier": tier, "pinned": pinned, "note": note}
        )
        transaction.on_commit(lambda: user_tier_mirror(user_id=user_id, tier=tier if pinned else None))
    return row


def user_tier_mirror(*, user_id: int, tier: str | None) -> None:
    """Write (or with ``None`` remove) the Redis copy of a user's pinned tier."""
    key = keys.pin_key(subject=keys.user_subject(user_id))
    if tier is None:
        limiter_redis().delete(key)
    else:
        limiter_redis().set(key, tier)


def ws_frame_subject(scope: dict[str, Any]) -> str:
    """The rate-limit subject of a WebSocket connection: its user, else its client address.

    The user is ``scope["user_id"]`` (set once at connect by the stream consumer, ``realtime.auth``),
    so users behind one address have their own buckets and an admin's tier pin applies to sockets.
    """
    user_id = scope.get("user_id")
    if user_id is not None:
        return keys.user_subject(user_id)
    client = scope.get("client") or ("unknown", 0)
    return keys.ip_subject(str(client[0]))


def _ws_frame_admit(subject: str) -> FrameRefusal | None:
    shed = load_shed_check(priority="low")
    if shed is not None:
        return FrameRefusal(code="overloaded", retry_after=float(shed))
    try:
        decision = rate_limit_check(subject=subject, service="ws_messages")
    except RateLimiterUnavailable as exc:
        return FrameRefusal(code="unavailable", retry_after=float(exc.retry_after))
    if not decision.allowed:
        return FrameRefusal(code="rate_limited", retry_after=decision.retry_after)
    return None


async def ws_frame_admit(scope: dict[str, Any]) -> FrameRefusal | None:
    """Admit one inbound client frame (``None``) or say why not; runs off the event loop.

    Frames are low-priority work, shed first under load (``gateway.overload``), then each spends a
    ``ws_messages`` token. With the limiter down and failing closed the frame is refused. The stream
    consumer calls it through ``realtime.extensions.frame_admit`` (registered in ``GatewayConfig.ready``).
    """
    from asgiref.sync import sync_to_async

    return await sync_to_async(_ws_frame_admit, thread_sensitive=False)(ws_frame_subject(scope))


SYSTEM_USERNAME = "chorus-system"


def system_user_ensure() -> int:
    """The id of the user system comments are posted as, created on first use.

    It has an unusable password, so nobody can sign in as it.
    """
    from django.contrib.auth import get_user_model

    system_user, created = get_user_model().objects.get_or_create(username=SYSTEM_USERNAME)
    if created:
        system_user.set_unusable_password()
        system_user.save(update_fields=["password"])
    return system_user.pk
