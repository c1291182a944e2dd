"""Every environment variable Chorus reads, in one place.

Production differs from development only by these variables; the other settings modules import
from here and never touch ``os.environ`` themselves.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def _list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = _bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "chorus-insecure-development-key-change-me")
ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chorus")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
# Seconds before the Redis broker hands an unacknowledged task to another worker.
CELERY_VISIBILITY_TIMEOUT = _int("CELERY_VISIBILITY_TIMEOUT", 600)
# Prefix of every Redis key and pub/sub channel, so two deployments can share one Redis.
REDIS_PREFIX = os.environ.get("CHORUS_REDIS_PREFIX", "chorus")

COMMENT_MAX_LENGTH = _int("CHORUS_COMMENT_MAX_LENGTH", 2000)
PAGE_SIZE_DEFAULT = _int("CHORUS_PAGE_SIZE_DEFAULT", 50)
PAGE_SIZE_MAX = _int("CHORUS_PAGE_SIZE_MAX", 500)
# Pending comments older than this are handed to Celery again by the periodic sweep.
PENDING_SWEEP_AGE_SECONDS = _int("CHORUS_PENDING_SWEEP_AGE_SECONDS", 30)
# Live frames a WebSocket connection may have queued before it falls back to the event log.
WS_SEND_BUFFER = _int("CHORUS_WS_SEND_BUFFER", 1000)
# Largest inbound WebSocket frame a client may send, in characters.
WS_MAX_INBOUND_FRAME = _int("CHORUS_WS_MAX_INBOUND_FRAME", 4096)
# How often each node compares what it delivered with the event log (the safety net for lost publishes).
HUB_TAIL_CHECK_SECONDS = float(os.environ.get("CHORUS_HUB_TAIL_CHECK_SECONDS", "2"))
LOG_LEVEL = os.environ.get("CHORUS_LOG_LEVEL", "INFO")

# --- real-time tier at scale (backpressure, discovery, presence) ---
# Bytes a socket may have written but not yet flushed to the client before the server stops sending to it.
WS_MAX_WRITE_BUFFER = _int("CHORUS_WS_MAX_WRITE_BUFFER", 256 * 1024)
# Seconds a socket may stay over that limit before it is closed as too far behind (close code 4408).
WS_STALL_SECONDS = float(os.environ.get("CHORUS_WS_STALL_SECONDS", "10"))
# Inbound frames per second a socket may send (token bucket refill) and the burst it may send at once.
WS_INBOUND_RATE = float(os.environ.get("CHORUS_WS_INBOUND_RATE", "20"))
WS_INBOUND_BURST = _int("CHORUS_WS_INBOUND_BURST", 40)
# Frames refused by the rate limit, in a row, after which the socket is closed (close code 4429).
WS_INBOUND_STRIKES = _int("CHORUS_WS_INBOUND_STRIKES", 20)
# This node's identity and public WebSocket base URL in the node registry (discovery).
NODE_ID = os.environ.get("CHORUS_NODE_ID", "")
NODE_WS_URL = os.environ.get("CHORUS_NODE_WS_URL", "")
# Registry namespace: nodes of one pool are offered by discovery together.
NODE_POOL = os.environ.get("CHORUS_NODE_POOL", "default")
# A node whose heartbeat is older than this disappears from the registry.
NODE_TTL_SECONDS = _int("CHORUS_NODE_TTL_SECONDS", 4)
NODE_HEARTBEAT_SECONDS = float(os.environ.get("CHORUS_NODE_HEARTBEAT_SECONDS", "1"))
# Connections above which discovery sends a stream's new clients to the least-loaded node instead.
NODE_MAX_CONNECTIONS = _int("CHORUS_NODE_MAX_CONNECTIONS", 5000)
# Connections of the node's own async Redis pool (registry, presence); pub/sub uses one more.
NODE_REDIS_POOL_SIZE = _int("CHORUS_NODE_REDIS_POOL_SIZE", 8)
