"""Holding a table lock from outside, as a migration would, to stop a node's reads at a known point."""

import contextlib
from collections.abc import Iterator

import psycopg
from django.conf import settings
from django.db import connection
from psycopg import sql


@contextlib.contextmanager
def table_locked(table: str) -> Iterator[None]:
    """Hold ACCESS EXCLUSIVE on ``table`` until the block ends: every read of it waits meanwhile."""
    config = settings.DATABASES["default"]
    conn = psycopg.connect(
        host=config["HOST"] or "127.0.0.1",
        port=config["PORT"] or 5432,
        user=config["USER"] or "postgres",
        password=config["PASSWORD"] or None,
        dbname=config["NAME"],
        connect_timeout=5,
    )
    try:
        conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
        yield
    finally:
        conn.rollback()
        conn.close()


def lock_waiters() -> int:
    """Sessions of the test database waiting for a lock (the node's reads held by ``table_locked``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])
