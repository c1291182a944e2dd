"""Gateway reads: the tier a user is in right now, the pins to mirror."""

from gateway.models import UserTier
from project.ratelimit import keys, limiter_redis
from project.redis import redis_text


def user_tier_current(*, user_id: int) -> str:
    """The tier the limiter applies to a user now: the pin if any, else the automatic tier."""
    subject = keys.user_subject(user_id)
    pinned = limiter_redis().get(keys.pin_key(subject=subject))
    if pinned:
        return redis_text(pinned)
    automatic = limiter_redis().hget(keys.subject_key(subject=subject), "tier")
    return redis_text(automatic) if automatic else "regular"


def user_tiers_pinned() -> list[tuple[int, str]]:
    return list(UserTier.objects.filter(pinned=True).values_list("user_id", "tier"))
