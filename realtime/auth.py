"""Who is on a stream socket: resolved once, at connect, from ``?token=`` or the session cookie.

Channels' ``AuthMiddlewareStack`` wraps ``send`` and checks the session on every frame (about a
fifth of a node's CPU in a fan-out loop); this resolves the user once and only writes
``scope["user_id"]`` (``None`` for an anonymous socket), leaving ``send`` untouched.
"""

from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from realtime.reads import read_quick


def _user_id_from_token(key: str) -> int | None:
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user_id if token is not None and token.user.is_active else None


def _user_id_from_session(session_key: str) -> int | None:
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(session_key)
    raw_id = store.get(SESSION_KEY)
    if raw_id is None or store.get(BACKEND_SESSION_KEY) is None:
        return None
    user = get_user_model()._default_manager.filter(pk=raw_id, is_active=True).first()
    if user is None:
        return None
    # The same check as django.contrib.auth.get_user: a changed password ends the session.
    if not constant_time_compare(store.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return None
    return user.pk


def socket_user_id(scope: dict[str, Any]) -> int | None:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "token" in query:
        return _user_id_from_token(query["token"][0])
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            cookie = SimpleCookie()
            cookie.load(value.decode("latin-1"))
            if settings.SESSION_COOKIE_NAME in cookie:
                return _user_id_from_session(cookie[settings.SESSION_COOKIE_NAME].value)
    return None


_socket_user_id = read_quick(socket_user_id)


class SocketUserMiddleware:
    """ASGI middleware for WebSockets: sets ``scope["user_id"]`` once; never wraps send/receive."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket":
            scope = {**scope, "user_id": await _socket_user_id(scope)}
        return await self.app(scope, receive, send)
