"""A pure-ASGI fast lane for ``POST /api/v1/streams/{slug}/reactions`` with token authentication.

A live tap is a few Redis commands, but through Django it also paid the synchronous middleware
chain and DRF on one thread per process, plus a token and a stream query per request; that shared
cost hid the storage design (``docs/BENCHMARKS.md``). This handler sits in front of Django in
``project/asgi.py`` and answers the taps it can on the event loop: it takes only ``POST`` to that
path with ``Authorization: Token <key>``, ``Content-Type: application/json`` and no session
cookie. Everything else (session requests, which need CSRF; anonymous; other methods and media
types) goes to Django unchanged, so ``reactions.api.StreamReactionsView`` stays the reference: the
same status codes and JSON bodies, the same gateway throttle and shedding (``reactions`` service,
``low`` priority) and the same ``RateLimit-*`` headers.

Token -> user id and slug -> stream id come from the lookups the stream sockets use
(``realtime.lookups``): cached in process for ``CHORUS_FAST_TAP_CACHE_SECONDS``, so a deleted
token, deactivated user or deleted stream is honoured within that bound (taps of a deleted stream
counted meanwhile are dropped by the flush, which skips streams that no longer exist); misses are
read in batches, off the event loop.
"""

import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from gateway import keys
from gateway.headers import rate_limit_header_pairs
from gateway.overload import latency_record, load_shed_check
from gateway.services import RateLimiterUnavailable, rate_limit_check_async
from reactions.services.taps import TapLimited, UnknownKind, reaction_kind_check, reaction_tap_async
from realtime.auth import token_users
from realtime.lookups import stream_ids

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]], Any]

PATH = re.compile(r"^/api/v1/streams/(?P<slug>[-a-zA-Z0-9_]+)/reactions/?$")
MAX_BODY = 1024


class Answer(Exception):
    """A finished response: status, JSON body and extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or []


def _error(status: int, code: str, detail: str, **extra: Any) -> Answer:
    headers = extra.pop("headers", None)
    return Answer(status, {"code": code, "detail": detail, **extra}, headers)


def _invalid(field: str, message: str) -> Answer:
    return _error(400, "invalid", f"Invalid input: {field}.", fields={field: [message]})


def _token_key(scope: dict[str, Any]) -> str | None:
    """The key when this request is ours to answer, else ``None`` (Django handles it)."""
    key = None
    json_body = False
    for name, value in scope["headers"]:
        if name == b"authorization":
            parts = value.split()
            if len(parts) != 2 or parts[0].lower() != b"token":
                return None
            key = parts[1].decode("latin-1")
        elif name == b"content-type":
            json_body = value.split(b";")[0].strip().lower() == b"application/json"
        elif name == b"cookie" and settings.SESSION_COOKIE_NAME.encode() in value:
            return None  # session credentials: Django decides (DRF tries the token first, then CSRF)
    return key if json_body else None


def _content_length(scope: dict[str, Any]) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _body(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    too_large = _error(413, "too_large", f"The request body is over {MAX_BODY} bytes.")
    if (_content_length(scope) or 0) > MAX_BODY:
        raise too_large
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _kind_of(raw: bytes) -> str:
    """The same answers as ``TapSerializer`` behind DRF's ``JSONParser``."""
    try:
        data = json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise _error(400, "parse_error", f"JSON parse error - {exc}") from None
    if not isinstance(data, dict):
        message = f"Invalid data. Expected a dictionary, but got {type(data).__name__}."
        raise _invalid("non_field_errors", message)
    if "kind" not in data:
        raise _invalid("kind", "This field is required.")
    kind = data["kind"]
    if kind is None:
        raise _invalid("kind", "This field may not be null.")
    if isinstance(kind, bool) or not isinstance(kind, (str, int, float)):
        raise _invalid("kind", "Not a valid string.")
    try:
        return reaction_kind_check(str(kind).strip())
    except UnknownKind as exc:
        raise _invalid("kind", str(exc)) from None


async def _tap(scope: dict[str, Any], receive: Any, key: str, slug: str) -> Answer:
    try:
        user_id = await token_users.get(key)
        if user_id is None:
            raise _error(401, "authentication_failed", "Invalid token.", headers=[("WWW-Authenticate", "Token")])
        if (shed := load_shed_check(priority="low")) is not None:
            raise _error(
                503, "overloaded", "The service is overloaded, try again shortly.", headers=[("Retry-After", str(shed))]
            )
        try:
            decision = await rate_limit_check_async(subject=keys.user_subject(user_id), service="reactions")
        except RateLimiterUnavailable as exc:
            detail, retry = "Rate limiter unavailable, try again later.", [("Retry-After", str(exc.retry_after))]
            raise _error(503, "service_unavailable", detail, headers=retry) from None
        limit_headers = rate_limit_header_pairs(decision)
        try:
            if not decision.allowed:
                wait = max(1, math.ceil(decision.retry_after))
                detail = f"Request was throttled. Expected available in {wait} second{'s' if wait != 1 else ''}."
                raise _error(429, "throttled", detail, headers=[("Retry-After", str(wait))])
            kind = _kind_of(await _body(scope, receive))
            stream_id = await stream_ids.get(slug)
            if stream_id is None:
                raise _error(404, "not_found", f"No stream '{slug}'.")
            try:
                result = await reaction_tap_async(stream_id=stream_id, user_id=user_id, kind=kind)
            except TapLimited as exc:
                wait = max(1, math.ceil(exc.retry_after))
                detail = f"Request was throttled. Expected available in {wait} second{'s' if wait != 1 else ''}."
                raise _error(429, "rate_limited", detail, headers=[("Retry-After", str(wait))]) from None
            except RedisError:
                raise _error(
                    503, "service_unavailable", "Reactions are unavailable right now; try again shortly."
                ) from None
            return Answer(202, {"kind": kind, "hot": result.hot}, limit_headers)
        except Answer as answer:
            answer.headers += limit_headers
            raise
    except DatabaseError:
        # A miss could not be looked up: the same answer as the database breaker's.
        detail = "The database is unavailable, try again later."
        return _error(503, "service_unavailable", detail, headers=[("Retry-After", "1")])
    except Answer as answer:
        return answer


async def _respond(send: Callable[..., Awaitable[None]], answer: Answer) -> None:
    body = json.dumps(answer.body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FastTaps:
    """ASGI app: answers token-authenticated JSON taps itself, hands every other request to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http" or scope["method"] != "POST" or (match := PATH.match(scope["path"])) is None:
            return await self.app(scope, receive, send)
        key = _token_key(scope)
        if key is None:
            return await self.app(scope, receive, send)
        started = time.monotonic()
        try:
            answer = await _tap(scope, receive, key, match["slug"])
        except ConnectionAbortedError:
            return None
        await _respond(send, answer)
        latency_record(milliseconds=(time.monotonic() - started) * 1000)
        return None
