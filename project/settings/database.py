"""Database: PostgreSQL from DATABASE_URL (pooled with psycopg 3), SQLite as the embedded fallback."""

import dj_database_url

from project.settings.environment import DATABASE_URL

_default = dj_database_url.parse(DATABASE_URL)
if _default["ENGINE"] == "django.db.backends.postgresql":
    # A pool instead of a connection per request: ASGI requests hop threads, so persistent
    # per-thread connections (CONN_MAX_AGE) leak; a bounded pool does not.
    _default["CONN_MAX_AGE"] = 0
    _default["OPTIONS"] = {
        "connect_timeout": 5,
        "pool": {"min_size": 1, "max_size": 8, "timeout": 5},
    }

DATABASES = {"default": _default}
