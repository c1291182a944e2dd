"""Read-your-writes routing: replica reads for HTTP requests, the primary right after a write.

Pinning lives in a ``contextvars.ContextVar`` set by ``gateway.middleware`` for the duration of
one HTTP request (a thread-local would not follow the request into async code or across
``sync_to_async`` hops). Outside a request (Celery tasks, WebSocket consumers, the hub's gap
repair, management commands) there is no request scope and every read goes to the primary:
those paths need the order of record, not a lagging copy.

Within a request, reads go to the primary for credentials (users, sessions, tokens), once the
request wrote anything, inside a transaction, or when the authenticated user wrote within
``CHORUS_READ_YOUR_WRITES_SECONDS`` (a short-lived Redis marker, set after a request that wrote,
so it holds on every node).
"""

import contextlib
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

import pybreaker
import redis
from django.conf import settings
from django.db import connections
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject, empty

from project.breakers import cache_breaker
from project.redis import redis_client

PRIMARY, REPLICA = "default", "replica"
# Credentials are read from the primary: a session or token made a moment ago must work at once.
PRIMARY_ONLY_APPS = frozenset({"auth", "authtoken", "sessions"})


@dataclass
class RequestScope:
    request: HttpRequest
    pinned: bool = False
    wrote: bool = False
    checked_user_id: int | None = None


_scope: ContextVar[RequestScope | None] = ContextVar("chorus_db_scope", default=None)


def _redis() -> redis.Redis:
    return redis_client("quick")


def write_marker_key(user_id: int) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:gw:rw:user:{user_id}"


def _known_user_id(request: HttpRequest) -> int | None:
    """The authenticated user's id if authentication already ran (never triggers it: no recursion)."""
    user = request.__dict__.get("user")
    if user is None or (isinstance(user, SimpleLazyObject) and user._wrapped is empty):
        return None
    return user.pk if getattr(user, "is_authenticated", False) else None


def _user_wrote_recently(user_id: int) -> bool:
    try:
        return bool(cache_breaker.call(_redis().exists, write_marker_key(user_id)))
    except (redis.RedisError, pybreaker.CircuitBreakerError):
        return True  # cannot tell: the primary is always correct


def request_scope_enter(request: HttpRequest) -> Token[RequestScope | None]:
    """Let this request's reads use the replica; returns the token for ``request_scope_exit``."""
    return _scope.set(RequestScope(request=request))


def request_scope_exit(token: Token[RequestScope | None]) -> None:
    """Close the request's scope; after a successful write, pin the user to the primary for a while."""
    scope = _scope.get()
    _scope.reset(token)
    if scope is None or not scope.wrote:
        return
    user_id = _known_user_id(scope.request)
    if user_id is not None:
        user_wrote(user_id=user_id)


def user_wrote(*, user_id: int) -> None:
    """Pin the user's reads to the primary for ``CHORUS_READ_YOUR_WRITES_SECONDS`` (on every node).

    Called after a request that wrote; a no-op without a replica. If Redis is down the user may
    briefly read a lagging replica; the breaker logs the outage.
    """
    if REPLICA not in connections.settings:
        return
    with contextlib.suppress(redis.RedisError, pybreaker.CircuitBreakerError):
        cache_breaker.call(
            _redis().set, write_marker_key(user_id), 1, ex=max(1, settings.CHORUS_READ_YOUR_WRITES_SECONDS)
        )


class PrimaryReplicaRouter:
    """Django database router: see the module docstring for the rules."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        scope = _scope.get()
        if scope is None or scope.pinned or REPLICA not in connections.settings:
            return PRIMARY
        if model._meta.app_label in PRIMARY_ONLY_APPS:
            return PRIMARY
        if connections[PRIMARY].in_atomic_block:
            return PRIMARY
        user_id = _known_user_id(scope.request)
        if user_id is not None and scope.checked_user_id != user_id:
            scope.checked_user_id = user_id
            scope.pinned = _user_wrote_recently(user_id)
            if scope.pinned:
                return PRIMARY
        return REPLICA

    def db_for_write(self, model: Any, **hints: Any) -> str:
        scope = _scope.get()
        if scope is not None:
            scope.wrote = True
            scope.pinned = True
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the replica is a copy of the primary

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool:
        return db == PRIMARY
