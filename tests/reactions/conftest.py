"""Reaction tests start from empty reaction keys in Redis (stream ids are reused between tests)."""

import pytest
from django.conf import settings

from reactions.hot import HotStreams
from reactions.redis_counters import redis_client
from realtime.node import node


@pytest.fixture(autouse=True)
def _clean_reaction_keys() -> None:
    client = redis_client()
    keys = list(client.scan_iter(match=f"{settings.CHORUS_REDIS_PREFIX}:rx:*", count=1000))
    if keys:
        client.delete(*keys)
    node.part(HotStreams).reset()
