"""Names of the Redis pub/sub channels the real-time tier uses (one obvious place for them)."""

from django.conf import settings


def stream_channel(stream_id: int) -> str:
    """The pub/sub channel carrying a stream's encoded event frames.

    Keyed by id, not slug: a stream deleted and created again under the same slug is a new
    sequence, and must not inherit a node's memory of the old one.
    """
    return f"{settings.CHORUS_REDIS_PREFIX}:stream:{stream_id}"


def hub_control_channel() -> str:
    """A channel every node subscribes to, so its pub/sub connection is never idle-empty."""
    return f"{settings.CHORUS_REDIS_PREFIX}:hub"
