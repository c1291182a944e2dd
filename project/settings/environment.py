"""Every environment variable Chorus reads, in one place.

Production differs from development only by these variables; the other settings modules import
from here and never touch ``os.environ`` themselves.
"""

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def _raw(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank (the default applies)."""
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() else None


def _refuse(name: str, value: str, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{name} must be {expected}, not {value!r}")


def _bool(name: str, default: bool) -> bool:
    """A yes/no variable that refuses anything else at start (a typo must not silently mean "no")."""
    value = _raw(name)
    if value is None:
        return default
    text = value.lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise _refuse(name, value, "1 or 0 (true/false, yes/no, on/off)")


def _int(name: str, default: int) -> int:
    value = _raw(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise _refuse(name, value, "a whole number") from None


def _float(name: str, default: float) -> float:
    value = _raw(name)
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise _refuse(name, value, "a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise _refuse(name, value, "a finite number")
    return number


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _raw(name)
    if value is None:
        return default
    if value not in choices:
        raise _refuse(name, value, "one of " + ", ".join(choices))
    return value


def _list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _file_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


DEBUG = _bool("DJANGO_DEBUG", False)
# The key that signs sessions, CSRF tokens and password resets: DJANGO_SECRET_KEY, else the file
# CHORUS_SECRET_KEY_FILE (default .secret-key in the checkout, which `make run` writes once with a
# random key). With neither, only DEBUG starts, with a fixed key anyone could forge with.
SECRET_KEY_FILE = Path(os.environ.get("CHORUS_SECRET_KEY_FILE") or BASE_DIR / ".secret-key")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "") or _file_text(SECRET_KEY_FILE)
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            f"DEBUG is off and there is no secret key: set DJANGO_SECRET_KEY (a long random value), "
            f"or write one to {SECRET_KEY_FILE} (scripts/secret_key.sh does), or set DJANGO_DEBUG=1 "
            f"on a development machine."
        )
    SECRET_KEY = "chorus-insecure-debug-only-key"
ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = _list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# Served to browsers over HTTPS only (TLS at the node or at a proxy in front of it): session and CSRF
# cookies are marked Secure, and HTTPS answers tell browsers to use nothing else for HSTS_SECONDS.
HTTPS = _bool("CHORUS_HTTPS", False)
HSTS_SECONDS = _int("CHORUS_HSTS_SECONDS", 31536000)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and drops a client's own): trust it,
# so a request that came over HTTPS is known to be secure (HSTS is sent only on those). Never set it
# when clients can reach a node directly: they could claim HTTPS.
TRUST_X_FORWARDED_PROTO = _bool("CHORUS_TRUST_X_FORWARDED_PROTO", False)

DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chorus")
CHORUS_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# Redis Cluster: REDIS_URL (and CHORUS_GATEWAY_REDIS_URL, CHORUS_CACHE_REDIS_URL when set) name a seed
# node of a cluster, and every client is cluster-aware (project/redis.py). The Celery broker is never
# the cluster: it needs its own CELERY_BROKER_URL (a plain Redis or RabbitMQ).
CHORUS_REDIS_CLUSTER = _bool("CHORUS_REDIS_CLUSTER", False)
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
if not CELERY_BROKER_URL:
    if CHORUS_REDIS_CLUSTER:
        raise ImproperlyConfigured(
            "CHORUS_REDIS_CLUSTER=1 needs CELERY_BROKER_URL: the Celery broker cannot be the Redis Cluster "
            "(Celery's Redis transport uses one server); point it at a plain Redis or at RabbitMQ."
        )
    CELERY_BROKER_URL = CHORUS_REDIS_URL
# Streams are mapped onto this many partitions (stream id modulo it); each partition is one pub/sub
# channel, and the hash tag of a stream's Redis keys, spread evenly over the cluster's hash slots.
# Every node and worker of a deployment must use the same value: change it only with a full restart.
CHORUS_PUBSUB_PARTITIONS = _int("CHORUS_PUBSUB_PARTITIONS", 64)
if not 1 <= CHORUS_PUBSUB_PARTITIONS <= 16384:
    raise ImproperlyConfigured("CHORUS_PUBSUB_PARTITIONS must be between 1 and 16384")
# In cluster mode, how often each node re-reads the cluster's slot map to move its pub/sub
# subscriptions to the masters that own them now (it also does so at once on MOVED, on a
# connection lost and on the server's own sunsubscribe).
CHORUS_PUBSUB_TOPOLOGY_SECONDS = _float("CHORUS_PUBSUB_TOPOLOGY_SECONDS", 5.0)
# Seconds before the Redis broker hands an unacknowledged task to another worker.
CELERY_VISIBILITY_TIMEOUT = _int("CELERY_VISIBILITY_TIMEOUT", 600)
# Name of the Celery task queue (its dead-letter queue is "<name>.dead_letter").
CHORUS_TASK_QUEUE = os.environ.get("CHORUS_TASK_QUEUE", "chorus")
# A task of an outbox message that has run this long without finishing is presumed lost with its
# worker, and its message is sent again (the task is idempotent).
CHORUS_TASK_LEASE_SECONDS = _int("CHORUS_TASK_LEASE_SECONDS", 60)
# Retries of a failing task before it is dead-lettered, and the cap of the backoff between them.
CHORUS_TASK_MAX_RETRIES = _int("CHORUS_TASK_MAX_RETRIES", 6)
CHORUS_TASK_RETRY_BACKOFF_BASE = _float("CHORUS_TASK_RETRY_BACKOFF_BASE", 1.0)
# (capped far below the visibility timeout, or a waiting retry would be handed out twice)
CHORUS_TASK_RETRY_BACKOFF_MAX = min(_float("CHORUS_TASK_RETRY_BACKOFF_MAX", 60.0), CELERY_VISIBILITY_TIMEOUT / 4)
# How often Celery beat sweeps the outbox for messages the broker did not take.
OUTBOX_SWEEP_SECONDS = _float("CHORUS_OUTBOX_SWEEP_SECONDS", 5.0)
# Work accepted but not done after this many seconds is re-driven from PostgreSQL, whatever the
# broker says (lost in a Redis restart or failover, purged, or with a worker that died): pending
# comments and outbox messages alike. Beat checks every half of it.
CHORUS_PUBLISH_REDRIVE_SECONDS = _int("CHORUS_PUBLISH_REDRIVE_SECONDS", 10)
# The sequencer publishes at most this many comments of a stream per transaction (group commit)...
CHORUS_PUBLISH_BATCH = _int("CHORUS_PUBLISH_BATCH", 500)
# ...and a stream's task hands over to a fresh one after this many seconds, so busy streams share workers.
CHORUS_PUBLISH_TASK_BUDGET_SECONDS = _float("CHORUS_PUBLISH_TASK_BUDGET_SECONDS", 2.0)
# Deliberate failures for fault drills, e.g. "comment_publish:poison" (see delivery/faults.py).
CHORUS_FAULT_INJECT = os.environ.get("CHORUS_FAULT_INJECT", "")
# A saga step claimed longer ago than this (its worker died) may be claimed again; a saga with no
# progress for CHORUS_SAGA_STALL_SECONDS is resumed by the periodic sweep.
CHORUS_SAGA_CLAIM_LEASE_SECONDS = _int("CHORUS_SAGA_CLAIM_LEASE_SECONDS", 60)
CHORUS_SAGA_STALL_SECONDS = _int("CHORUS_SAGA_STALL_SECONDS", 180)
# Threads of an ASGI node that run Django's synchronous middleware and views, each for one request
# at a time (project/asgi_handler.py); requests beyond them wait on the event loop, and one that
# waits longer than HTTP_QUEUE_SECONDS is answered 503 with Retry-After.
CHORUS_HTTP_THREADS = max(1, _int("CHORUS_HTTP_THREADS", 4))
CHORUS_HTTP_QUEUE_SECONDS = _float("CHORUS_HTTP_QUEUE_SECONDS", 10.0)
# Largest request body a node takes, in bytes: a longer Content-Length, or a chunked body that grows
# past it, is answered 413 before the body is read (project/asgi_handler.py, project/server_limits.py).
CHORUS_MAX_REQUEST_BYTES = _int("CHORUS_MAX_REQUEST_BYTES", 256 * 1024)
# Seconds each process caches a token -> user lookup (project/token_auth.py; REST API and tap fast
# lane): a deleted token or deactivated user is still honoured for at most this long (0: no cache).
CHORUS_TOKEN_CACHE_SECONDS = _float("CHORUS_TOKEN_CACHE_SECONDS", 5.0)
# Seconds a client is told to wait (Retry-After) when a backing service is down.
CHORUS_RETRY_AFTER_SECONDS = _int("CHORUS_RETRY_AFTER_SECONDS", 5)
# Prefix of every Redis key and pub/sub channel, so two deployments can share one Redis.
CHORUS_REDIS_PREFIX = os.environ.get("CHORUS_REDIS_PREFIX", "chorus")

CHORUS_COMMENT_MAX_LENGTH = _int("CHORUS_COMMENT_MAX_LENGTH", 2000)
CHORUS_PAGE_SIZE_DEFAULT = _int("CHORUS_PAGE_SIZE_DEFAULT", 50)
CHORUS_PAGE_SIZE_MAX = _int("CHORUS_PAGE_SIZE_MAX", 500)
# Live frames a WebSocket connection may have queued before it falls back to the event log.
CHORUS_WS_SEND_BUFFER = _int("CHORUS_WS_SEND_BUFFER", 1000)
# Largest inbound WebSocket frame a client may send, in characters.
CHORUS_WS_MAX_INBOUND_FRAME = _int("CHORUS_WS_MAX_INBOUND_FRAME", 4096)
# How often each node compares what it delivered with the event log (the safety net for lost publishes).
CHORUS_HUB_TAIL_CHECK_SECONDS = _float("CHORUS_HUB_TAIL_CHECK_SECONDS", 2.0)
LOG_LEVEL = os.environ.get("CHORUS_LOG_LEVEL", "INFO")
# Interpreter tuning of nodes and workers (project/process_tuning.py): exempt what a process
# loaded at startup from garbage collection, and how long a thread may hold the GIL while another
# waits (seconds; 0 keeps CPython's 0.005).
CHORUS_GC_FREEZE = _bool("CHORUS_GC_FREEZE", True)
# Nodes keep freezing what survives (its sockets): every CHORUS_GC_REFREEZE_SECONDS after a young
# collection, and every CHORUS_GC_FULL_SECONDS after a full one that reclaims what died frozen.
CHORUS_GC_REFREEZE_SECONDS = _float("CHORUS_GC_REFREEZE_SECONDS", 1.0)
CHORUS_GC_FULL_SECONDS = _float("CHORUS_GC_FULL_SECONDS", 600.0)
CHORUS_GIL_SWITCH_INTERVAL = _float("CHORUS_GIL_SWITCH_INTERVAL", 0.0005)
# Under daphne, send a frame at once when nothing is buffered (realtime/daphne_tuning.py).
CHORUS_DAPHNE_WRITE_THROUGH = _bool("CHORUS_DAPHNE_WRITE_THROUGH", True)

# --- gateway: rate limits, internal API, overload protection -----------------------------------
# Redis holding the token buckets (defaults to REDIS_URL); its own URL lets it live elsewhere.
CHORUS_GATEWAY_REDIS_URL = os.environ.get("CHORUS_GATEWAY_REDIS_URL", CHORUS_REDIS_URL)
# JSON overriding the limits table: {"<tier>": {"<service>": [capacity, refill_per_second]}}.
RATE_LIMITS_JSON = os.environ.get("CHORUS_RATE_LIMITS", "")
# When the limiter's Redis is unreachable: "local" (each node enforces the limits on its own),
# "closed" (limited endpoints answer 503) or "open" (admit without limits).
CHORUS_RATELIMIT_WHEN_REDIS_DOWN = _choice("CHORUS_RATELIMIT_WHEN_REDIS_DOWN", "local", ("local", "closed", "open"))
# Adaptive tiers: requests per second (averaged over the window) that make a user "hot", the rate
# below which a hot user must stay for HOLD seconds to become "regular" again.
CHORUS_TIER_HOT_ABOVE = _float("CHORUS_TIER_HOT_ABOVE", 5.0)
CHORUS_TIER_REGULAR_BELOW = _float("CHORUS_TIER_REGULAR_BELOW", 1.0)
CHORUS_TIER_HOLD_SECONDS = _float("CHORUS_TIER_HOLD_SECONDS", 60.0)
CHORUS_TIER_WINDOW_SECONDS = _float("CHORUS_TIER_WINDOW_SECONDS", 10.0)
# Shared secret of the /internal/ API (empty: the internal API refuses every request).
CHORUS_INTERNAL_API_TOKEN = os.environ.get("CHORUS_INTERNAL_API_TOKEN", "")
# Circuit breakers: consecutive failures that open a breaker, seconds before it tries again.
CHORUS_BREAKER_FAIL_MAX = _int("CHORUS_BREAKER_FAIL_MAX", 3)
CHORUS_BREAKER_RESET_SECONDS = _int("CHORUS_BREAKER_RESET_SECONDS", 5)
# Load shedding: Celery queue length at which reactions/presence (LOW) and then comments (HIGH) are refused.
CHORUS_SHED_QUEUE_LOW = _int("CHORUS_SHED_QUEUE_LOW", 5000)
CHORUS_SHED_QUEUE_HIGH = _int("CHORUS_SHED_QUEUE_HIGH", 20000)
# Load shedding by publish lag: seconds the oldest accepted comment has waited for publication at
# which reactions/presence (LOW) and then comments (HIGH) are refused.
CHORUS_SHED_PUBLISH_LAG_LOW = _float("CHORUS_SHED_PUBLISH_LAG_LOW", 5.0)
CHORUS_SHED_PUBLISH_LAG_HIGH = _float("CHORUS_SHED_PUBLISH_LAG_HIGH", 20.0)
# django-ratelimit's coarse per-IP limit on the anonymous sign-in endpoints (token and login page).
CHORUS_ANON_AUTH_RATE = os.environ.get("CHORUS_ANON_AUTH_RATE", "10/m")
# Load shedding also starts when the average API latency of a node passes this many milliseconds
# (low priority first, then comments at twice the value).
CHORUS_SHED_LATENCY_MS = _int("CHORUS_SHED_LATENCY_MS", 2000)
# Celery queues whose length (in the Redis broker) counts as queue depth for shedding
# (default: Celery's default queue).
CHORUS_SHED_QUEUES = _list("CHORUS_SHED_QUEUES", []) or [CHORUS_TASK_QUEUE]
# Redis of the comments page cache and stream counters (defaults to REDIS_URL). Point it at a Redis
# of its own with maxmemory and an eviction policy (allkeys-lru): everything there can be recomputed.
CHORUS_CACHE_REDIS_URL = os.environ.get("CHORUS_CACHE_REDIS_URL", CHORUS_REDIS_URL)
# Seconds a cached comments page lives (it is served only for the stream head it was read at, so a
# new event makes it a miss at once; the TTL only bounds memory), and the largest page cached.
CHORUS_COMMENT_PAGE_CACHE_SECONDS = _int("CHORUS_COMMENT_PAGE_CACHE_SECONDS", 60)
CHORUS_COMMENT_PAGE_CACHE_MAX_BYTES = _int("CHORUS_COMMENT_PAGE_CACHE_MAX_BYTES", 128 * 1024)
# A streaming replica for reads (optional). Reads of a user who wrote in the last
# READ_YOUR_WRITES_SECONDS go to the primary, so nobody misses their own write.
DATABASE_REPLICA_URL = os.environ.get("DATABASE_REPLICA_URL", "")
CHORUS_READ_YOUR_WRITES_SECONDS = _int("CHORUS_READ_YOUR_WRITES_SECONDS", 5)
# --- reactions ---------------------------------------------------------------------------------
# Kinds of reaction a client may send (live taps and reactions on comments).
CHORUS_REACTION_KINDS = _list("CHORUS_REACTION_KINDS", ["heart", "fire", "clap", "laugh", "wow"])
# Live taps one user may send per second (per-user fixed window on the Redis server's clock).
CHORUS_REACTION_TAPS_PER_SECOND = _int("CHORUS_REACTION_TAPS_PER_SECOND", 20)
# How often Celery beat flushes tap counters from Redis to PostgreSQL.
CHORUS_REACTION_FLUSH_SECONDS = _float("CHORUS_REACTION_FLUSH_SECONDS", 2.0)
# This process's replica id in the tap counters; default "<hostname>:<pid>".
CHORUS_REACTION_REPLICA_ID = os.environ.get("CHORUS_REACTION_REPLICA_ID", "")
# A stream whose tap rate (per second) reaches this becomes hot...
CHORUS_HOT_STREAM_THRESHOLD = _int("CHORUS_HOT_STREAM_THRESHOLD", 200)
# ...and stays hot this many seconds after its rate was last over the threshold.
CHORUS_HOT_STREAM_HOLD_SECONDS = _int("CHORUS_HOT_STREAM_HOLD_SECONDS", 30)
# Redis keys a hot stream's tap counters are split across.
CHORUS_HOT_STREAM_SHARDS = _int("CHORUS_HOT_STREAM_SHARDS", 8)
# Interval of the coalesced reaction-count frames of a hot stream, in milliseconds.
CHORUS_REACTION_COALESCE_MS = _int("CHORUS_REACTION_COALESCE_MS", 250)
# The HTTP fast lane (gateway/fast_lane.py) answers comment posts and taps on the event loop;
# 0 sends every request through Django and DRF (the reference path, slower).
CHORUS_FAST_LANE = _bool("CHORUS_FAST_LANE", True)
# Seconds a node caches token -> user, session -> user and slug -> stream (realtime/lookups.py, for
# stream sockets and the HTTP fast lane): a deleted token, ended session or deleted stream is still
# honoured for at most this long.
CHORUS_FAST_TAP_CACHE_SECONDS = _float("CHORUS_FAST_TAP_CACHE_SECONDS", 5.0)
# Name of this region/replica in comment edit version vectors (must differ between regions).
CHORUS_REGION = os.environ.get("CHORUS_REGION", "local")
# --- real-time tier at scale (backpressure, discovery, presence) ---
# Bytes a socket may have written but not yet flushed to the client before the server stops sending to it.
CHORUS_WS_MAX_WRITE_BUFFER = _int("CHORUS_WS_MAX_WRITE_BUFFER", 256 * 1024)
# Seconds a socket may stay over that limit before it is closed as too far behind (close code 4408).
CHORUS_WS_STALL_SECONDS = _float("CHORUS_WS_STALL_SECONDS", 10.0)
# Inbound frames per second a socket may send (token bucket refill) and the burst it may send at once.
CHORUS_WS_INBOUND_RATE = _float("CHORUS_WS_INBOUND_RATE", 20.0)
CHORUS_WS_INBOUND_BURST = _int("CHORUS_WS_INBOUND_BURST", 40)
# Frames refused by the rate limit, in a row, after which the socket is closed (close code 4429).
CHORUS_WS_INBOUND_STRIKES = _int("CHORUS_WS_INBOUND_STRIKES", 20)
# This node's identity and public WebSocket base URL in the node registry (discovery).
CHORUS_NODE_ID = os.environ.get("CHORUS_NODE_ID", "")
CHORUS_NODE_WS_URL = os.environ.get("CHORUS_NODE_WS_URL", "")
# Registry namespace: nodes of one pool are offered by discovery together.
CHORUS_NODE_POOL = os.environ.get("CHORUS_NODE_POOL", "default")
# A node whose heartbeat is older than this disappears from the registry.
CHORUS_NODE_TTL_SECONDS = _int("CHORUS_NODE_TTL_SECONDS", 4)
CHORUS_NODE_HEARTBEAT_SECONDS = _float("CHORUS_NODE_HEARTBEAT_SECONDS", 1.0)
# Connections above which discovery sends a stream's new clients to the least-loaded node instead.
CHORUS_NODE_MAX_CONNECTIONS = _int("CHORUS_NODE_MAX_CONNECTIONS", 5000)
# Connections of the node's own async Redis pool (registry, presence); pub/sub uses one more.
CHORUS_NODE_REDIS_POOL_SIZE = _int("CHORUS_NODE_REDIS_POOL_SIZE", 8)
# Behind a load balancer: the public WebSocket base URL (e.g. wss://chorus.example.com) that discovery
# hands out instead of a node's own address; the balancer picks the node (deploy/haproxy/chorus.cfg).
CHORUS_PUBLIC_WS_URL = os.environ.get("CHORUS_PUBLIC_WS_URL", "")
# On SIGTERM a node tells its sockets to reconnect elsewhere at random moments spread over this many
# seconds, then finishes its HTTP requests and exits (realtime/drain.py, docs/OPERATIONS.md).
CHORUS_DRAIN_SECONDS = _float("CHORUS_DRAIN_SECONDS", 10.0)

# What the settings package exports: every setting the code reads as ``settings.CHORUS_*`` (a
# literal list, so type checkers see the settings too; tests/test_settings.py keeps it complete).
__all__ = [
    "CHORUS_ANON_AUTH_RATE",
    "CHORUS_BREAKER_FAIL_MAX",
    "CHORUS_BREAKER_RESET_SECONDS",
    "CHORUS_CACHE_REDIS_URL",
    "CHORUS_COMMENT_MAX_LENGTH",
    "CHORUS_COMMENT_PAGE_CACHE_MAX_BYTES",
    "CHORUS_COMMENT_PAGE_CACHE_SECONDS",
    "CHORUS_DAPHNE_WRITE_THROUGH",
    "CHORUS_DRAIN_SECONDS",
    "CHORUS_FAST_LANE",
    "CHORUS_FAST_TAP_CACHE_SECONDS",
    "CHORUS_FAULT_INJECT",
    "CHORUS_GATEWAY_REDIS_URL",
    "CHORUS_GC_FREEZE",
    "CHORUS_GC_FULL_SECONDS",
    "CHORUS_GC_REFREEZE_SECONDS",
    "CHORUS_GIL_SWITCH_INTERVAL",
    "CHORUS_HOT_STREAM_HOLD_SECONDS",
    "CHORUS_HOT_STREAM_SHARDS",
    "CHORUS_HOT_STREAM_THRESHOLD",
    "CHORUS_HTTP_QUEUE_SECONDS",
    "CHORUS_HTTP_THREADS",
    "CHORUS_HUB_TAIL_CHECK_SECONDS",
    "CHORUS_INTERNAL_API_TOKEN",
    "CHORUS_MAX_REQUEST_BYTES",
    "CHORUS_NODE_HEARTBEAT_SECONDS",
    "CHORUS_NODE_ID",
    "CHORUS_NODE_MAX_CONNECTIONS",
    "CHORUS_NODE_POOL",
    "CHORUS_NODE_REDIS_POOL_SIZE",
    "CHORUS_NODE_TTL_SECONDS",
    "CHORUS_NODE_WS_URL",
    "CHORUS_PAGE_SIZE_DEFAULT",
    "CHORUS_PAGE_SIZE_MAX",
    "CHORUS_PUBLIC_WS_URL",
    "CHORUS_PUBLISH_BATCH",
    "CHORUS_PUBLISH_REDRIVE_SECONDS",
    "CHORUS_PUBLISH_TASK_BUDGET_SECONDS",
    "CHORUS_PUBSUB_PARTITIONS",
    "CHORUS_PUBSUB_TOPOLOGY_SECONDS",
    "CHORUS_RATELIMIT_WHEN_REDIS_DOWN",
    "CHORUS_REACTION_COALESCE_MS",
    "CHORUS_REACTION_FLUSH_SECONDS",
    "CHORUS_REACTION_KINDS",
    "CHORUS_REACTION_REPLICA_ID",
    "CHORUS_REACTION_TAPS_PER_SECOND",
    "CHORUS_READ_YOUR_WRITES_SECONDS",
    "CHORUS_REDIS_CLUSTER",
    "CHORUS_REDIS_PREFIX",
    "CHORUS_REDIS_URL",
    "CHORUS_REGION",
    "CHORUS_RETRY_AFTER_SECONDS",
    "CHORUS_SAGA_CLAIM_LEASE_SECONDS",
    "CHORUS_SAGA_STALL_SECONDS",
    "CHORUS_SHED_LATENCY_MS",
    "CHORUS_SHED_PUBLISH_LAG_HIGH",
    "CHORUS_SHED_PUBLISH_LAG_LOW",
    "CHORUS_SHED_QUEUES",
    "CHORUS_SHED_QUEUE_HIGH",
    "CHORUS_SHED_QUEUE_LOW",
    "CHORUS_TASK_LEASE_SECONDS",
    "CHORUS_TASK_MAX_RETRIES",
    "CHORUS_TASK_QUEUE",
    "CHORUS_TASK_RETRY_BACKOFF_BASE",
    "CHORUS_TASK_RETRY_BACKOFF_MAX",
    "CHORUS_TIER_HOLD_SECONDS",
    "CHORUS_TIER_HOT_ABOVE",
    "CHORUS_TIER_REGULAR_BELOW",
    "CHORUS_TIER_WINDOW_SECONDS",
    "CHORUS_TOKEN_CACHE_SECONDS",
    "CHORUS_WS_INBOUND_BURST",
    "CHORUS_WS_INBOUND_RATE",
    "CHORUS_WS_INBOUND_STRIKES",
    "CHORUS_WS_MAX_INBOUND_FRAME",
    "CHORUS_WS_MAX_WRITE_BUFFER",
    "CHORUS_WS_SEND_BUFFER",
    "CHORUS_WS_STALL_SECONDS",
]
