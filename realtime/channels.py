"""Names of the Redis pub/sub channels the real-time tier uses (one obvious place for them)."""

from django.conf import settings


def stream_channel(slug: str) -> str:
    """The pub/sub channel carrying a stream's encoded event frames."""
    return f"{settings.CHORUS_REDIS_PREFIX}:stream:{slug}"


def hub_control_channel() -> str:
    """A channel every node subscribes to, so its pub/sub connection is never idle-empty."""
    return f"{settings.CHORUS_REDIS_PREFIX}:hub"
