"""Channels and the real-time tier's Redis settings."""

from project.settings.environment import (
    HUB_TAIL_CHECK_SECONDS,
    REDIS_PREFIX,
    REDIS_URL,
    WS_MAX_INBOUND_FRAME,
    WS_SEND_BUFFER,
)

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": f"{REDIS_PREFIX}:asgi"},
    }
}

CHORUS_REDIS_URL = REDIS_URL
CHORUS_REDIS_PREFIX = REDIS_PREFIX
CHORUS_WS_SEND_BUFFER = WS_SEND_BUFFER
CHORUS_WS_MAX_INBOUND_FRAME = WS_MAX_INBOUND_FRAME
CHORUS_HUB_TAIL_CHECK_SECONDS = HUB_TAIL_CHECK_SECONDS
