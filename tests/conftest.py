"""Test fixtures: a fresh test database, and a real stack (two ASGI nodes and a Celery worker).

Everything here talks to real PostgreSQL and Redis. If either is missing the run fails loudly;
``make test`` starts them first when they are installed on this machine.
"""

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import dj_database_url
import httpx
import psycopg
import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management import call_command
from psycopg import sql
from pytest_django import DjangoDbBlocker
from rest_framework.authtoken.models import Token

from realtime.models import Stream
from tests.factories import StreamFactory, UserFactory
from tests.support.processes import AsgiNode, CeleryWorker
from tests.support.published import PublishedEvents


def _recreate_database() -> None:
    config = dj_database_url.parse(os.environ["DATABASE_URL"])
    admin = psycopg.connect(
        host=config["HOST"] or "127.0.0.1",
        port=config["PORT"] or 5432,
        user=config["USER"] or "postgres",
        password=config["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
        connect_timeout=5,
    )
    with admin:
        name = sql.Identifier(config["NAME"])
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(name))


def pytest_configure(config: pytest.Config) -> None:
    """Between tests the database is emptied with TRUNCATE while real workers may still be finishing
    a task (a publish that only re-broadcasts, a counter flush). TRUNCATE then can lose a deadlock to
    them; PostgreSQL aborts one side, and the worker retries its task. The flush retries too."""
    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test import TransactionTestCase

    # A private method of Django's, which its stubs do not declare.
    original = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]

    def _fixture_teardown(self: TransactionTestCase) -> None:
        for attempt in range(10):
            try:
                return original(self)
            except CommandError as exc:
                if attempt == 9 or not isinstance(exc.__cause__, OperationalError):
                    raise
                time.sleep(0.2)  # backoff between retries; the deadlock has already been resolved
        return None

    TransactionTestCase._fixture_teardown = _fixture_teardown  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def django_db_setup(django_db_blocker: DjangoDbBlocker) -> None:
    """A brand-new database for this run (servers and workers share it, so no test_ prefix)."""
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql", "tests need PostgreSQL"
    redis.Redis.from_url(settings.CHORUS_REDIS_URL).flushdb()
    _recreate_database()
    with django_db_blocker.unblock():
        call_command("migrate", verbosity=0)


@dataclass
class Stack:
    nodes: list[AsgiNode]
    worker: CeleryWorker
    extra: list = field(default_factory=list)

    def restart_worker(self) -> CeleryWorker:
        self.worker.stop()
        self.worker = CeleryWorker(self.worker.name).start().wait_ready()
        return self.worker


@pytest.fixture(scope="session")
def stack(django_db_setup: None) -> Iterator[Stack]:
    """Two nodes, one on each supported server (uvicorn, the default, and daphne), and one Celery
    worker, shared by the integration tests."""
    nodes = [AsgiNode("node-a", server="uvicorn").start(), AsgiNode("node-b", server="daphne").start()]
    worker = CeleryWorker("worker").start()
    stack = Stack(nodes=nodes, worker=worker)
    try:
        for node in nodes:
            node.wait_ready()
        worker.wait_ready()
        yield stack
    finally:
        for process in [*stack.nodes, stack.worker]:
            process.stop()


@pytest.fixture(scope="session")
def reference_node(stack: Stack) -> Iterator[AsgiNode]:
    """A node with the HTTP fast lane off: every request through Django and DRF, the reference."""
    # Its own pool: discovery must never hand a client of the shared stack to it.
    env = {"CHORUS_FAST_LANE": "0", "CHORUS_NODE_POOL": "reference"}
    node = AsgiNode("reference-node", server="uvicorn", env=env).start()
    try:
        yield node.wait_ready()
    finally:
        node.stop()


SERVICE_TOKEN = "suite-service-token"


@pytest.fixture(scope="session")
def service_node(stack: Stack) -> Iterator[AsgiNode]:
    """A node like the stack's first (uvicorn, fast lane on) that also knows the service token
    ``SERVICE_TOKEN``, so ``/internal/`` answers over real HTTP; in a pool of its own."""
    env = {"CHORUS_INTERNAL_API_TOKEN": SERVICE_TOKEN, "CHORUS_NODE_POOL": "service"}
    node = AsgiNode("service-node", server="uvicorn", env=env).start()
    try:
        yield node.wait_ready()
    finally:
        node.stop()


@pytest.fixture
def live(stack: Stack, transactional_db: None) -> Iterator[Stack]:
    """The shared stack with a clean database; restarts the worker if a test killed it."""
    if not stack.worker.alive():
        stack.restart_worker()
    yield stack
    if not stack.worker.alive():
        stack.restart_worker()


@dataclass
class ApiUser:
    user: User
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}


@pytest.fixture
def api_user(transactional_db: None) -> ApiUser:
    user = UserFactory.create()
    return ApiUser(user=user, token=Token.objects.create(user=user).key)


@pytest.fixture
def stream(transactional_db: None) -> Stream:
    return StreamFactory.create(slug=f"s-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


@pytest.fixture
def published_events() -> Iterator[PublishedEvents]:
    """The messages published on this run's partition channels during the test, decoded
    (``tests/support/published.py``): real Redis pub/sub, subscribed before the test begins."""
    from project.redis import redis_cluster_enabled

    if redis_cluster_enabled():
        # Never skipped: a test that asks for it under a cluster fails loudly instead of hiding the gap.
        pytest.fail("published_events reads classic pub/sub: a cluster's sharded publishes need SSUBSCRIBE")
    events = PublishedEvents().start()
    try:
        yield events
    finally:
        events.close()


# The fixtures that start servers or workers (``live`` and the rest build on ``stack``): the service
# tier (``-m services``) uses none of them.
_PROCESS_FIXTURES = {
    "stack", "reference_node", "service_node", "saga_stack", "fault_stack", "cluster_stack", "tuned_nodes",
    "js_nodes", "node_pair",
}  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep the service tier fast: a test marked ``services`` may not start a node or a worker."""
    offenders = [
        item.nodeid
        for item in items
        if item.get_closest_marker("services") and _PROCESS_FIXTURES & set(getattr(item, "fixturenames", ()))
    ]
    if offenders:
        raise pytest.UsageError(f"tests marked 'services' must not start nodes or workers: {offenders}")
