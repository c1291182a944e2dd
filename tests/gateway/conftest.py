"""Gateway fixtures: two nodes with small, known limits; a private PostgreSQL with Chorus migrated."""

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tests.support.processes import ROOT, AsgiNode
from tests.support.stores import PostgresServer, RedisServer

CAPACITY, RATE = 20, 10.0
WS_CAPACITY, WS_RATE = 5, 1.0
TUNED = {
    "CHORUS_RATE_LIMITS": json.dumps(
        {"regular": {"comments": [CAPACITY, RATE], "ws_messages": [WS_CAPACITY, WS_RATE]}}
    ),
    # The hammering clients must stay "regular" here: tiers are tested on their own.
    "CHORUS_TIER_HOT_ABOVE": "1000000",
}


@pytest.fixture(scope="package")
def tuned_nodes(django_db_setup: None) -> Iterator[list[AsgiNode]]:
    nodes = [AsgiNode(f"gw-tuned-{i}", env=TUNED).start() for i in range(2)]
    try:
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


@contextmanager
def node_on_private_redis(
    name: str, *, variable: str, env: dict[str, str] | None = None
) -> Iterator[tuple[AsgiNode, RedisServer]]:
    """An ASGI node whose ``variable`` (a Redis URL setting) points at a private Redis to kill."""
    store = RedisServer(f"{name}-redis").start().wait_ready()
    node = AsgiNode(name, env={variable: store.url, **(env or {})}).start()
    try:
        node.wait_ready()
        yield node, store
    finally:
        node.stop()
        store.stop()


@dataclass
class PrivateDatabase:
    """A private PostgreSQL primary with Chorus migrated, two users with tokens and a stream."""

    server: PostgresServer
    tokens: dict[str, str]
    slug: str

    @property
    def url(self) -> str:
        return self.server.url("chorus")


SETUP = """
import json
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from realtime.services import stream_create
users = {name: get_user_model().objects.create_user(name, password="pw-for-tests") for name in ("writer", "reader")}
stream_create(slug="private", title="Private")
print(json.dumps({name: Token.objects.create(user=user).key for name, user in users.items()}))
"""


def _manage(url: str, *args: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "project.settings", "DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


@pytest.fixture
def private_database() -> Iterator[PrivateDatabase]:
    server = PostgresServer.primary("gw-primary").start().wait_ready()
    database = None
    try:
        with server.connect() as admin:
            admin.execute("CREATE DATABASE chorus")
        url = server.url("chorus")
        _manage(url, "migrate", "--verbosity=0")
        tokens = json.loads(_manage(url, "shell", "-c", SETUP).strip().splitlines()[-1])
        database = PrivateDatabase(server=server, tokens=tokens, slug="private")
        yield database
    finally:
        # a test that restarted the server left the new process in ``database.server``
        (database.server if database else server).remove()
