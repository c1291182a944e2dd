"""Create the database named in DATABASE_URL if it does not exist (PostgreSQL only)."""

import os
import sys

import dj_database_url
import psycopg
from psycopg import sql


def main() -> int:
    config = dj_database_url.parse(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/chorus"))
    if config["ENGINE"] != "django.db.backends.postgresql":
        return 0
    name = config["NAME"]
    with psycopg.connect(
        host=config.get("HOST") or "127.0.0.1",
        port=config.get("PORT") or 5432,
        user=config.get("USER") or "postgres",
        password=config.get("PASSWORD") or None,  # psycopg leaves out a parameter that is None
        dbname="postgres",
        connect_timeout=5,
        autocommit=True,
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"==> created database {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
