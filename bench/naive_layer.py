"""The channel layer of the Channels-tutorial baseline: production has none (fan-out is the node's
own hub), so only the baseline's nodes and the process publishing to them install it."""

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers
from channels_redis.core import RedisChannelLayer
from django.conf import settings


def naive_layer_install() -> None:
    """Point Channels' default layer at channels-redis on ``REDIS_URL`` (as the tutorial's settings do)."""
    if channel_layers.backends.get(DEFAULT_CHANNEL_LAYER) is None:
        layer = RedisChannelLayer(hosts=[settings.CHORUS_REDIS_URL], prefix=f"{settings.CHORUS_REDIS_PREFIX}:asgi")
        channel_layers.set(DEFAULT_CHANNEL_LAYER, layer)
