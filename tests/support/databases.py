"""Empty databases of their own for tests that migrate or run code in a separate process."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dj_database_url
import psycopg
from psycopg import sql

from tests.support.processes import ROOT


def scratch_database_url(backend: str, *, suffix: str, directory: Path) -> str:
    """A new, empty database: on the test PostgreSQL server (the test database's name plus
    ``suffix``, dropped first if a previous run left it) or a SQLite file in ``directory``."""
    if backend == "sqlite":
        return f"sqlite:///{directory / f'{suffix}.sqlite3'}"
    assert backend == "postgresql", backend
    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    name = f"{config['NAME']}_{suffix}"
    with psycopg.connect(
        host=config["HOST"] or "127.0.0.1", port=config["PORT"] or 5432, user=config["USER"] or "postgres",
        dbname="postgres", autocommit=True,
    ) as admin:  # fmt: skip
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return os.environ["DATABASE_URL"].rsplit("/", 1)[0] + f"/{name}"


def run_module(
    module: str, *, database_url: str, env: dict[str, str] | None = None, timeout: float = 180
) -> dict[str, Any]:
    """Run ``python -m module`` with the production settings on ``database_url``; its last line of
    output, as JSON. Fails with the process's output if it fails."""
    env = {**os.environ, "DATABASE_URL": database_url, "DJANGO_SETTINGS_MODULE": "project.settings", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", module], cwd=ROOT, env=env, timeout=timeout, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{module} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])
