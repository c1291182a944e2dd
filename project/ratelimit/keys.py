"""Every Redis key the rate limiter uses, all under the deployment's prefix (built only here)."""

from django.conf import settings


def bucket_key(*, subject: str, service: str) -> str:
    # The subject in braces is a Redis Cluster hash tag: a subject's keys share one slot.
    return f"{settings.CHORUS_REDIS_PREFIX}:gw:{{{subject}}}:bucket:{service}"


def subject_key(*, subject: str) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:gw:{{{subject}}}:rate"


def pin_key(*, subject: str) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:gw:{{{subject}}}:pin"


def user_subject(user_id: int) -> str:
    return f"user:{user_id}"


def ip_subject(ip: str) -> str:
    return f"ip:{ip}"


def window_key(*, policy: str, subject: str) -> str:
    """A fixed window's counter; the script appends the Redis server's current second (same slot)."""
    return f"{settings.CHORUS_REDIS_PREFIX}:rl:{{{subject}}}:window:{policy}"
