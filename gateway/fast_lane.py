"""A pure-ASGI fast lane in front of Django for the two hot writes: comment posts and live taps.

Through Django a write pays the synchronous middleware chain and DRF, a hop to a request thread,
and per-request session and token queries; at live-event rates that shared cost, not the write
itself, is what a node spends its CPU on (``docs/BENCHMARKS.md``). This handler sits in front of
Django (``project/asgi.py``) and answers, on the event loop, the requests it can:

- ``POST`` to a route below, with ``Content-Type: application/json`` and a ``Host`` Django accepts;
- from a client it can authenticate without Django: ``Authorization: Token <key>`` (DRF tries the
  token first too), or a session cookie plus the CSRF token a browser sends, checked by Django's
  own ``CsrfViewMiddleware`` code on a request built from the ASGI scope.

Everything else (anonymous requests, other methods and media types, unknown sessions) goes to
Django unchanged, so the DRF views stay the reference. Both paths share the code that decides an
answer: the serializers, the domain services, ``comments.api.comment_accept_answer``, the gateway's
shedding and token buckets, and the API's exception handler for every error body; the tests
compare the two paths answer by answer (``tests/gateway/test_fast_lane.py``,
``tests/reactions/test_fast_taps.py``).

Token -> user, session -> user and slug -> stream come from the node's cached, batched lookups
(``realtime/lookups.py``, ``realtime/auth.py``), the ones stream sockets use: a deleted token, an
ended session, a password change, a deactivation or a deleted stream is honoured within
``CHORUS_FAST_TAP_CACHE_SECONDS``; misses are read off the loop, many at once under a storm.
"""

import contextlib
import functools
import io
import json
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import pybreaker
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.core.handlers.asgi import ASGIRequest
from django.db import DatabaseError
from django.http import HttpResponse
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.security import SecurityMiddleware
from redis.exceptions import RedisError
from rest_framework import exceptions
from rest_framework.authentication import CSRFCheck

from comments.api import StreamCommentsView, comment_outcome_answer, comment_post_validate
from comments.services import AcceptRequest, comments_accept_batch
from gateway.db_router import user_wrote
from gateway.headers import rate_limit_header_pairs
from gateway.overload import latency_record, load_shed_check
from project.api_errors import Overloaded, StoreUnavailable, answer_of, error_answer, pool_exhausted
from project.api_errors import too_large as too_large_error
from project.breakers import breaker_retry_after, database_breaker
from project.group_commit import GroupCommit, NoThreadFree
from project.ratelimit import RateLimiterUnavailable, keys, rate_limit_check_async, rate_limit_check_many
from project.token_auth import CachedTokenAuthentication
from reactions.api import StreamReactionsView, TapSerializer
from reactions.services.taps import TapLimited, reaction_tap_async
from realtime.auth import session_users, token_users
from realtime.lookups import stream_ids

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[..., Awaitable[None]]], Any]
Headers = list[tuple[str, str]]


class Answer(Exception):
    """A finished response: status, JSON body and extra headers."""

    def __init__(self, status: int, body: dict[str, Any], headers: Headers | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or []


def _answer_of(exc: Exception) -> Answer:
    """The answer DRF gives for ``exc``: the API's one error table (``project.api_errors``)."""
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        # What APIView sets: the first authentication class's keyword (an attribute DRF adds at run
        # time, which its stubs do not declare).
        exc.auth_header = "Token"  # type: ignore[union-attr]
    api = exc if isinstance(exc, exceptions.APIException) else None
    answer = answer_of(api) if api is not None else error_answer(exc)
    if answer is None:
        raise exc
    return Answer(answer.status, answer.body, list(answer.headers))


@dataclass
class Caller:
    """Who sent the request, and what the lane still needs to check about it."""

    user_id: int
    request: ASGIRequest  # built from the scope, without the body: Host, scheme, CSRF, absolute URIs
    timing: "Timing"
    service: str  # the gateway bucket the request spends


@dataclass
class Timing:
    queued: float = 0.0  # seconds spent waiting for a request thread: the node's queue, not its latency


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    service: str  # the gateway bucket one request spends
    priority: str  # load-shedding priority
    max_body: int  # bytes; larger bodies are refused with 413 before they are read
    handler: Callable[["Caller", dict[str, str], bytes], Awaitable["Answer"]]
    # The handler spends the bucket itself, on the request thread it needs anyway (a synchronous
    # Redis call there costs a fraction of redis-py's asyncio client on the loop).
    throttles: bool = False


# --- the routes ----------------------------------------------------------------------------------


def _parse(body: bytes) -> Any:
    """The body as DRF's ``JSONParser`` reads it, with the same error."""
    try:
        return json.loads(body)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise exceptions.ParseError(f"JSON parse error - {exc}") from None


@dataclass
class CommentPost:
    """A comment post, checked on the event loop, waiting for the next batch to be written."""

    caller: Caller
    slug: str
    stream_id: int | None
    fields: dict[str, Any]  # body, parent_id (empty when ``invalid``)
    key: str | None
    invalid: exceptions.APIException | None
    submitted: float  # monotonic time it joined the queue


def _comment_posts_write(posts: list[CommentPost]) -> list[Answer]:
    """One batch, on a request thread: the buckets in one Redis round trip, then the accepted
    comments in one transaction; each answer decided in DRF's order (bucket, input, stream)."""
    started = time.monotonic()
    for post in posts:
        post.caller.timing.queued = started - post.submitted  # the node's queue, not its latency
    checks = [(keys.user_subject(post.caller.user_id), post.caller.service) for post in posts]
    try:
        decisions = rate_limit_check_many(checks=checks)
    except RateLimiterUnavailable as exc:
        return [_answer_of(exc) for _ in posts]
    answers: list[Answer | None] = [None] * len(posts)
    accepting: list[int] = []
    requests: list[AcceptRequest] = []
    for index, (post, decision) in enumerate(zip(posts, decisions, strict=True)):
        if not decision.allowed:
            answers[index] = _answer_of(exceptions.Throttled(wait=max(1, math.ceil(decision.retry_after))))
        elif post.invalid is not None:
            answers[index] = _answer_of(post.invalid)
        elif post.stream_id is None:
            answers[index] = _answer_of(exceptions.NotFound(f"No stream '{post.slug}'."))
        else:
            accepting.append(index)
            requests.append(
                AcceptRequest(
                    stream_id=post.stream_id,
                    slug=post.slug,
                    author_id=post.caller.user_id,
                    idempotency_key=post.key,
                    **post.fields,
                )
            )
    for index, outcome in zip(accepting, comments_accept_batch(requests=requests), strict=True):
        caller = posts[index].caller
        try:
            status, body = comment_outcome_answer(outcome=outcome, absolute_uri=caller.request.build_absolute_uri)
        except exceptions.APIException as exc:
            answers[index] = _answer_of(exc)
        else:
            answers[index] = Answer(status, body)
            if status < 300:
                user_wrote(user_id=caller.user_id)  # read-your-writes, as after any request that wrote
    finished: list[Answer] = []
    for answer, decision in zip(answers, decisions, strict=True):
        assert answer is not None
        answer.headers += rate_limit_header_pairs(decision)
        finished.append(answer)
    return finished


_comment_posts: GroupCommit[CommentPost, Answer] = GroupCommit(_comment_posts_write, max_batch=200)


async def _comment(caller: Caller, path: dict[str, str], body: bytes) -> Answer:
    # Parsing and validation here, on the loop; the bucket and the INSERT with the batch of every
    # comment that arrives meanwhile (project/group_commit.py).
    slug = path["slug"]
    try:
        data = _parse(body)
        fields, key = comment_post_validate(data=data, idempotency_header=caller.request.headers.get("Idempotency-Key"))
        invalid = None
    except exceptions.APIException as exc:
        fields, key, invalid = {}, None, exc
    stream_id = await stream_ids.get(slug) if invalid is None else None
    post = CommentPost(caller, slug, stream_id, fields, key, invalid, submitted=time.monotonic())
    try:
        return await _comment_posts.submit(post)
    except NoThreadFree as exc:
        raise _answer_of(exc) from None


async def _tap(caller: Caller, path: dict[str, str], body: bytes) -> Answer:
    payload = TapSerializer(data=_parse(body))
    payload.is_valid(raise_exception=True)
    slug = path["slug"]
    stream_id = await stream_ids.get(slug)
    if stream_id is None:
        raise exceptions.NotFound(f"No stream '{slug}'.")
    kind = payload.validated_data["kind"]
    try:
        result = await reaction_tap_async(stream_id=stream_id, user_id=caller.user_id, kind=kind)
    except (TapLimited, RedisError) as exc:
        raise _answer_of(exc) from None
    return Answer(202, {"kind": kind, "hot": result.hot})


Handler = Callable[[Caller, dict[str, str], bytes], Awaitable[Answer]]


class _RateLimitedView(Protocol):
    """A DRF view that names its bucket (``gateway.throttles``)."""

    rate_limit_service: str


def _route(
    pattern: str, view: type[_RateLimitedView], handler: Handler, max_body: int, *, throttles: bool = False
) -> Route:
    """A route that spends the same bucket, at the same shedding priority, as its DRF view."""
    return Route(
        re.compile(pattern),
        service=view.rate_limit_service,
        priority=getattr(view, "rate_limit_priority", "normal"),
        max_body=max_body,
        handler=handler,
        throttles=throttles,
    )


ROUTES = (
    _route(
        r"^/api/v1/streams/(?P<slug>[-a-zA-Z0-9_]+)/comments/?$",
        StreamCommentsView,
        _comment,
        max_body=settings.CHORUS_MAX_REQUEST_BYTES,
        throttles=True,
    ),
    # A tap is a few bytes: anything over 1 KiB is refused unread (documented in docs/API.md).
    _route(r"^/api/v1/streams/(?P<slug>[-a-zA-Z0-9_]+)/reactions/?$", StreamReactionsView, _tap, max_body=1024),
)


# --- credentials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    token: str | None = None
    session: str | None = None


def _credentials(scope: dict[str, Any]) -> Credentials | None:
    """What the request authenticates with, if the lane can take it; None hands it to Django."""
    token = session = None
    json_body = False
    cookie_name = settings.SESSION_COOKIE_NAME.encode()
    for name, value in scope["headers"]:
        if name == b"authorization":
            parts = value.split()
            if len(parts) != 2 or parts[0].lower() != b"token":
                return None
            token = parts[1].decode("latin-1")
        elif name == b"content-type":
            json_body = value.split(b";")[0].strip().lower() == b"application/json"
        elif name == b"cookie" and cookie_name in value:
            session = _cookie(value.decode("latin-1"), settings.SESSION_COOKIE_NAME)
    if not json_body or (token is None and not session):
        return None
    return Credentials(token=token) if token is not None else Credentials(session=session)


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value or None
    return None


def _token_refusal(key: str) -> None:
    """Raise DRF's own 401 for a token that authenticates nobody ("Invalid token." or "User
    inactive or deleted."): the rare path, so the exact wording costs a lookup only here."""
    CachedTokenAuthentication().authenticate_credentials(key)
    raise exceptions.AuthenticationFailed("Invalid token.")  # it became valid meanwhile: refuse this once


_token_refused = database_sync_to_async(_token_refusal)


async def _user_id(credentials: Credentials) -> int | None:
    """The caller's user id; None for a session that is not (or no longer) signed in."""
    if credentials.token is not None:
        user_id = await token_users.get(credentials.token)
        if user_id is None:
            await _token_refused(credentials.token)
        return user_id
    assert credentials.session is not None
    return await session_users.get(credentials.session)


def _csrf_refusal(request: ASGIRequest) -> Answer | None:
    """DRF's ``SessionAuthentication.enforce_csrf``, on the same Django code."""
    check = CSRFCheck(lambda _request: HttpResponse())
    check.process_request(request)
    # No view, as in DRF's enforce_csrf: so none that is csrf_exempt (the stubs insist on one).
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    return _answer_of(exceptions.PermissionDenied(f"CSRF Failed: {reason}")) if reason else None


# --- the handler ---------------------------------------------------------------------------------


def _security_headers(request: ASGIRequest) -> Headers:
    """The headers Django's security and clickjacking middleware would add to this answer."""
    return _security_headers_for(secure=request.is_secure())


@functools.cache
def _security_headers_for(*, secure: bool) -> Headers:
    """They depend only on the settings and on whether the request came over HTTPS (HSTS)."""
    scope = {"type": "http", "method": "POST", "path": "/", "headers": [], "scheme": "https" if secure else "http"}
    request = ASGIRequest(scope, io.BytesIO())
    response = HttpResponse()
    SecurityMiddleware(lambda _request: response).process_response(request, response)
    XFrameOptionsMiddleware(lambda _request: response).process_response(request, response)
    return [(name, value) for name, value in response.items() if name.lower() != "content-type"]


def _too_large(limit: int) -> Answer:
    return Answer(413, too_large_error(limit), [("Connection", "close")])  # the rest is never read


async def _body(receive: Callable[[], Awaitable[dict[str, Any]]], limit: int, declared: int | None) -> bytes:
    if declared is not None and declared > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(
    route: Route, match: re.Match[str], credentials: Credentials, request: ASGIRequest, receive: Any, timing: Timing
) -> Answer:
    declared = _content_length(request)
    if declared is not None and declared > route.max_body:  # refused unread, as Django's handler does
        raise _too_large(route.max_body)
    if database_breaker.current_state == pybreaker.STATE_OPEN:
        raise _answer_of(StoreUnavailable("database", breaker_retry_after(database_breaker)))
    try:
        user_id = await _user_id(credentials)
    except exceptions.APIException as exc:
        raise _answer_of(exc) from None
    if user_id is None:
        raise _HandToDjango  # a session not signed in: Django answers as for any anonymous request
    if credentials.token is None and (refusal := _csrf_refusal(request)) is not None:
        raise refusal
    if (shed := load_shed_check(priority=route.priority)) is not None:
        raise _answer_of(Overloaded(shed))
    caller = Caller(user_id=user_id, request=request, timing=timing, service=route.service)
    if route.throttles:
        return await route.handler(caller, match.groupdict(), await _body(receive, route.max_body, None))
    try:
        decision = await rate_limit_check_async(subject=keys.user_subject(user_id), service=route.service)
    except RateLimiterUnavailable as exc:
        raise _answer_of(exc) from None
    limit_headers = rate_limit_header_pairs(decision)
    try:
        if not decision.allowed:
            raise _answer_of(exceptions.Throttled(wait=max(1, math.ceil(decision.retry_after))))
        body = await _body(receive, route.max_body, None)
        try:
            answer = await route.handler(caller, match.groupdict(), body)
        except exceptions.APIException as exc:
            raise _answer_of(exc) from None
    except Answer as refused:
        refused.headers += limit_headers
        raise
    answer.headers += limit_headers
    return answer


class _HandToDjango(Exception):
    """The lane cannot answer this request after all (nothing of it was read)."""


def _content_length(request: ASGIRequest) -> int | None:
    try:
        return int(request.META["CONTENT_LENGTH"])
    except (KeyError, ValueError):
        return None


def _record_database_failure(exc: DatabaseError) -> None:
    def reraise() -> None:
        raise exc

    with contextlib.suppress(DatabaseError, pybreaker.CircuitBreakerError):
        database_breaker.call(reraise)


async def _respond(send: Callable[..., Awaitable[None]], answer: Answer, extra: Headers) -> None:
    body = json.dumps(answer.body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode("latin-1")) for name, value in [*answer.headers, *extra]]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class FastLane:
    """ASGI app: answers the hot writes it can take itself, hands every other request to ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if not settings.CHORUS_FAST_LANE or scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        for route in ROUTES:
            if (match := route.pattern.match(scope["path"])) is not None:
                break
        else:
            return await self.app(scope, receive, send)
        credentials = _credentials(scope)
        if credentials is None:
            return await self.app(scope, receive, send)
        request = ASGIRequest(scope, io.BytesIO())
        try:
            request.get_host()  # a Host Django would refuse: let Django refuse it
        except DisallowedHost:
            return await self.app(scope, receive, send)
        started, timing = time.monotonic(), Timing()
        try:
            answer = await _answer(route, match, credentials, request, receive, timing)
        except _HandToDjango:
            return await self.app(scope, receive, send)
        except Answer as refused:
            answer = refused
        except ConnectionAbortedError:
            return None
        except DatabaseError as exc:
            if not pool_exhausted(exc):  # a busy pool says nothing about the database
                _record_database_failure(exc)
            answer = _answer_of(exc)  # after the breaker counted it: its Retry-After
        await _respond(send, answer, _security_headers(request))
        # Like Django's requests, latency counts from when a request thread took the request: the
        # node's own queue under a burst is not a reason to shed.
        latency_record(milliseconds=(time.monotonic() - started - timing.queued) * 1000)
        return None
