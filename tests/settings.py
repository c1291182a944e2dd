"""Settings for the test suite: the real settings, pointed at a test database and Redis DB.

Imported before the settings package, so the environment is set before anything reads it. The
test run (and every server or worker process it starts, which inherit this environment) uses
``CHORUS_TEST_DATABASE_URL`` / ``CHORUS_TEST_REDIS_URL``, never the developer's own database.
"""

import os
import secrets

os.environ["DATABASE_URL"] = os.environ.get(
    "CHORUS_TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chorus_test"
)
os.environ["REDIS_URL"] = os.environ.get("CHORUS_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
os.environ.setdefault("CHORUS_REDIS_PREFIX", "chorus-test")
os.environ.setdefault("CELERY_VISIBILITY_TIMEOUT", "8")
os.environ.setdefault("CHORUS_TASK_QUEUE", "chorus-test")
os.environ.setdefault("CHORUS_TASK_RETRY_BACKOFF_BASE", "0.2")
os.environ.setdefault("CHORUS_TASK_RETRY_BACKOFF_MAX", "1")
os.environ.setdefault("CHORUS_OUTBOX_SWEEP_SECONDS", "1")
os.environ.setdefault("CHORUS_PUBLISH_REDRIVE_SECONDS", "3")

# The suite's servers admit everything: tests of other features post hundreds of comments a
# second from one user. Gateway tests start their own nodes with small, known limits.
os.environ.setdefault(
    "CHORUS_RATE_LIMITS",
    '{"regular": {"comments": [1e6, 1e6], "reactions": [1e6, 1e6], "writes": [1e6, 1e6], "reads": [1e6, 1e6],'
    ' "ws_messages": [1e6, 1e6]}}',
)
os.environ.setdefault("CHORUS_TIER_HOT_ABOVE", "1000000000")
# A node stopped with SIGTERM drains its sockets over this window before it exits: short, so that
# stopping the suite's nodes stays quick. The drain tests set their own.
os.environ.setdefault("CHORUS_DRAIN_SECONDS", "1")
# Settings refuse to load without a secret key (DEBUG is off, as in production): one for this run,
# shared by every process it starts.
os.environ.setdefault("DJANGO_SECRET_KEY", f"chorus-tests-{secrets.token_urlsafe(32)}")

from project.settings import *  # noqa: F403

# The test process itself (never the servers and workers it starts, which read project.settings):
# some tests run hundreds of clients on its event loop while a thread reads the database, and the
# pool's own thread that opens a connection for that read competes for the GIL with the loop. Under
# a loaded machine that took longer than the servers' 5 s (PoolTimeout in the rolling-restart test).
for _database in DATABASES.values():  # noqa: F405
    if "pool" in _database.get("OPTIONS", {}):
        _database["OPTIONS"]["pool"] = {**_database["OPTIONS"]["pool"], "timeout": 60}
