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

# --- reactions ---------------------------------------------------------------------------------
# Kinds of reaction a client may send (live taps and reactions on comments).
REACTION_KINDS = _list("CHORUS_REACTION_KINDS", ["heart", "fire", "clap", "laugh", "wow"])
# Live taps one user may send per second (per-user fixed window on the Redis server's clock).
REACTION_TAPS_PER_SECOND = _int("CHORUS_REACTION_TAPS_PER_SECOND", 20)
# How often Celery beat flushes tap counters from Redis to PostgreSQL.
REACTION_FLUSH_SECONDS = float(os.environ.get("CHORUS_REACTION_FLUSH_SECONDS", "2"))
# This process's replica id in the tap counters; default "<hostname>:<pid>".
REACTION_REPLICA_ID = os.environ.get("CHORUS_REACTION_REPLICA_ID", "")
# A stream whose tap rate (per second) reaches this becomes hot...
HOT_STREAM_THRESHOLD = _int("CHORUS_HOT_STREAM_THRESHOLD", 200)
# ...and stays hot this many seconds after its rate was last over the threshold.
HOT_STREAM_HOLD_SECONDS = _int("CHORUS_HOT_STREAM_HOLD_SECONDS", 30)
# Redis keys a hot stream's tap counters are split across.
HOT_STREAM_SHARDS = _int("CHORUS_HOT_STREAM_SHARDS", 8)
# Interval of the coalesced reaction-count frames of a hot stream, in milliseconds.
REACTION_COALESCE_MS = _int("CHORUS_REACTION_COALESCE_MS", 250)
# Name of this region/replica in comment edit version vectors (must differ between regions).
REGION = os.environ.get("CHORUS_REGION", "local")
