"""Database: PostgreSQL from DATABASE_URL (pooled with psycopg 3), SQLite as the embedded fallback."""

import dj_database_url

from project.settings.environment import CHORUS_HTTP_THREADS, DATABASE_URL

_default = dj_database_url.parse(DATABASE_URL)
if _default["ENGINE"] == "django.db.backends.postgresql":
    # A pool instead of a connection per request: a connection goes back at the end of each
    # request or task. Each of a node's request threads (CHORUS_HTTP_THREADS) holds at most one, and
    # the rest is left for the WebSocket side's thread(s), so requests never queue on the pool.
    _default["CONN_MAX_AGE"] = 0
    _default["OPTIONS"] = {
        "connect_timeout": 5,
        "pool": {"min_size": 1, "max_size": max(8, CHORUS_HTTP_THREADS + 4), "timeout": 5},
    }

elif _default["ENGINE"] == "django.db.backends.sqlite3":
    # The embedded fallback of `make run`: two nodes, a worker and beat write one file. BEGIN
    # IMMEDIATE takes the write lock up front, so a transaction that read first never fails to
    # upgrade ("database is locked" at once, which no busy timeout helps); writers queue for up to
    # `timeout` seconds instead. WAL lets readers (pages, replays) run while one writer writes.
    _default["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }

DATABASES = {"default": _default}

# Optional read replica: HTTP requests read from it through gateway.db_router, except right
# after the user's own write (then the primary). Tasks, consumers and commands use the primary.
from project.settings.environment import DATABASE_REPLICA_URL  # noqa: E402

if DATABASE_REPLICA_URL:
    _replica = dj_database_url.parse(DATABASE_REPLICA_URL)
    if "CONN_MAX_AGE" in _default:
        _replica["CONN_MAX_AGE"] = _default["CONN_MAX_AGE"]
    if "OPTIONS" in _default:
        _replica["OPTIONS"] = _default["OPTIONS"]
    DATABASES["replica"] = _replica
    DATABASE_ROUTERS = ["gateway.db_router.PrimaryReplicaRouter"]
