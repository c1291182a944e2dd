"""Where the wall time of a request goes, stage by stage: measuring equipment for ``bench/accept.py``.

Served as the ASGI app instead of ``project.asgi:application`` (``<server> chorus_stage_timer:application``,
this file copied onto ``PYTHONPATH``), so it measures any source tree, the baseline's too. It
imports the tree's ``project.asgi``, wraps the functions a comment ``POST`` passes through
(``POINTS``), and keeps, per stage, the *exclusive* wall time: the time in the stage minus the time
in the stages it called. Database and Redis calls are their own stages, named after the stage that
made them (``comment_accept / DB``), so what is left of a stage is its CPU when requests run one at
a time. ``asgiref`` hops are a stage too: their exclusive time is the cost of crossing threads.

``GET /__stages`` answers the totals (ms per request) and resets them.
"""

import contextvars
import functools
import inspect
import json
import time
from collections import defaultdict
from typing import Any


class Recorder:
    def __init__(self) -> None:
        self.stack: list[list[Any]] = []  # [name, started, time in children]

    def push(self, name: str) -> None:
        self.stack.append([name, time.perf_counter(), 0.0])

    def pop(self) -> None:
        name, started, children = self.stack.pop()
        inclusive = time.perf_counter() - started
        totals[name] += inclusive - children
        if self.stack:
            self.stack[-1][2] += inclusive


_current: contextvars.ContextVar[Recorder | None] = contextvars.ContextVar("stage_recorder", default=None)
totals: defaultdict[str, float] = defaultdict(float)
requests = 0


def _io_name(kind: str) -> str:
    recorder = _current.get()
    parent = recorder.stack[-1][0].split(" / ")[0] if recorder and recorder.stack else "outside"
    return f"{parent} / {kind}"


def _wrap(name: str, func: Any, *, io: bool = False) -> Any:
    if getattr(func, "_stage_wrapped", False):
        return func
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            recorder = _current.get()
            if recorder is None:
                return await func(*args, **kwargs)
            recorder.push(_io_name(name) if io else name)
            try:
                return await func(*args, **kwargs)
            finally:
                recorder.pop()

        wrapper = async_wrapper
    else:

        @functools.wraps(func)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            recorder = _current.get()
            if recorder is None:
                return func(*args, **kwargs)
            recorder.push(_io_name(name) if io else name)
            try:
                return func(*args, **kwargs)
            finally:
                recorder.pop()

        wrapper = sync_wrapper
    wrapper._stage_wrapped = True  # type: ignore[attr-defined]  # a mark on the function object
    return wrapper


def _patch(owner: Any, attribute: str, name: str, *, io: bool = False) -> None:
    original = owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)
    if original is None:
        original = getattr(owner, attribute, None)
    if original is None:
        return
    if isinstance(original, staticmethod | classmethod):
        return
    setattr(owner, attribute, _wrap(name, original, io=io))


def _import(path: str) -> Any:
    module, _, attribute = path.rpartition(".")
    try:
        return getattr(__import__(module, fromlist=[attribute]), attribute)
    except (ImportError, AttributeError):
        return None


# (object path, attribute, stage name, is I/O)
POINTS: list[tuple[str, str, str, bool]] = [
    ("asgiref.sync.SyncToAsync", "__call__", "thread hops (asgiref)", False),
    ("asgiref.sync.AsyncToSync", "__call__", "thread hops (asgiref)", False),
    ("django.db.close_old_connections", "", "request signals: close_old_connections", False),
    ("django.core.handlers.base.BaseHandler", "_get_response", "Django handler and URL resolution", False),
    ("django.core.handlers.base.BaseHandler", "_get_response_async", "Django handler and URL resolution", False),
    ("django.middleware.csrf.CsrfViewMiddleware", "process_view", "CSRF", False),
    ("rest_framework.views.APIView", "dispatch", "DRF dispatch", False),
    ("rest_framework.views.APIView", "perform_authentication", "DRF authentication", False),
    ("rest_framework.authentication.TokenAuthentication", "authenticate_credentials", "token lookup", False),
    ("rest_framework.authentication.SessionAuthentication", "enforce_csrf", "CSRF", False),
    ("django.contrib.auth.get_user", "", "session user load", False),
    ("django.contrib.sessions.backends.base.SessionBase", "_get_session", "session load", False),
    ("rest_framework.views.APIView", "check_permissions", "DRF permissions", False),
    ("rest_framework.views.APIView", "check_throttles", "throttle", False),
    ("gateway.throttles.load_shed_check", "", "throttle: load shedding", False),
    ("gateway.throttles.rate_limit_check", "", "throttle: token bucket", False),
    ("rest_framework.request.Request", "_load_data_and_files", "parsing and validation", False),
    ("rest_framework.serializers.Serializer", "is_valid", "parsing and validation", False),
    ("rest_framework.serializers.BaseSerializer", "is_valid", "parsing and validation", False),
    ("comments.api.idempotency_key", "", "parsing and validation", False),
    ("comments.api.stream_or_404", "", "stream lookup", False),
    ("comments.api.comment_accept", "", "comment_accept (black box)", False),
    ("rest_framework.views.APIView", "finalize_response", "response rendering", False),
    ("rest_framework.response.Response", "rendered_content", "response rendering", False),
    ("django.db.backends.utils.CursorWrapper", "_execute", "DB", True),
    ("django.db.backends.utils.CursorWrapper", "_executemany", "DB", True),
    ("django.db.backends.base.base.BaseDatabaseWrapper", "_commit", "DB", True),
    ("django.db.backends.base.base.BaseDatabaseWrapper", "_rollback", "DB", True),
    ("django.db.backends.base.base.BaseDatabaseWrapper", "connect", "DB connect or pool", True),
    ("django.db.backends.base.base.BaseDatabaseWrapper", "close", "DB connection return", True),
    ("redis.client.Redis", "execute_command", "Redis", True),
    ("redis.client.Pipeline", "execute", "Redis", True),
    ("kombu.messaging.Producer", "publish", "broker publish", True),
]


def _install() -> None:
    from django.conf import settings

    for path, attribute, name, io in POINTS:
        if attribute == "":
            module_path, _, function = path.rpartition(".")
            module = __import__(module_path, fromlist=[function])
            if hasattr(module, function):
                setattr(module, function, _wrap(name, getattr(module, function), io=io))
            continue
        owner = _import(path)
        if owner is None:
            continue
        if attribute == "rendered_content":
            prop = inspect.getattr_static(owner, attribute, None)
            if isinstance(prop, property):
                setattr(owner, attribute, property(_wrap(name, prop.fget)))
            continue
        _patch(owner, attribute, name, io=io)
    # Every middleware class: its own __call__ (MiddlewareMixin's when it has none).
    from django.utils.module_loading import import_string

    for dotted in settings.MIDDLEWARE:
        cls = import_string(dotted)
        cls.__call__ = _wrap(f"middleware: {cls.__name__}", cls.__call__)
    # The request_started/finished receivers were connected before they were wrapped: reconnect them.
    import django.db
    from django.core import signals

    original = inspect.unwrap(django.db.close_old_connections)
    wrapped = django.db.close_old_connections
    for signal in (signals.request_started, signals.request_finished):
        if signal.disconnect(original):
            signal.connect(wrapped)


import django  # noqa: E402

django.setup(set_prefix=False)
_install()

from project.asgi import application as _application  # noqa: E402

_root_name = "ASGI handler, server glue, body read, response send"


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    global requests
    if scope["type"] == "http" and scope["path"] == "/__stages":
        per_request = {name: 1000 * seconds / max(1, requests) for name, seconds in totals.items()}
        body = json.dumps({"requests": requests, "ms_per_request": per_request})
        totals.clear()
        requests = 0
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body.encode()})
        return
    if scope["type"] != "http" or not scope["path"].startswith("/api/"):
        await _application(scope, receive, send)
        return
    recorder = Recorder()
    token = _current.set(recorder)
    recorder.push(_root_name)
    try:
        await _application(scope, receive, send)
    finally:
        recorder.pop()
        _current.reset(token)
        requests += 1
