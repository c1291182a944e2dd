"""Who is on a stream socket: resolved once, at connect, from ``?token=`` or the session cookie.

Channels' ``AuthMiddlewareStack`` wraps ``send`` and checks the session on every frame (about a
fifth of a node's CPU in a fan-out loop); the stream consumer instead asks ``socket_user_id`` once
and keeps the user id (``None`` for an anonymous socket), leaving ``send`` untouched.

An anonymous socket costs no lookup at all. Tokens and sessions are looked up through
``CachedLookup`` (``realtime.lookups``): answers are kept for ``CHORUS_FAST_TAP_CACHE_SECONDS``, so
a deleted token, a deactivated user, a changed password or a logout is honoured by new sockets
within that bound, and a storm of different users costs one query per batch, not one per socket.
The HTTP tap fast lane (``reactions.fast_taps``) shares the token lookup.
"""

from collections.abc import Iterable
from http.cookies import CookieError, SimpleCookie

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from realtime.lookups import CachedLookup


def _user_ids_by_token(keys: list[str]) -> dict[str, int]:
    """Token key -> user id, for the tokens of active users among ``keys`` (one query)."""
    from rest_framework.authtoken.models import Token

    return dict(Token.objects.filter(key__in=keys, user__is_active=True).values_list("key", "user_id"))


def _session_data(session_keys: list[str]) -> dict[str, dict[str, object]]:
    engine = import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    if issubclass(engine, DatabaseSessionStore):
        # The database backends (db, cached_db) keep every session in one table: read them at once.
        rows = (
            engine.get_model_class()
            .objects.filter(session_key__in=session_keys, expire_date__gt=timezone.now())
            .values_list("session_key", "session_data")
        )
        store = engine()
        return {key: store.decode(data) for key, data in rows}
    found = {}
    for key in session_keys:
        store = engine(key)
        found[key] = {name: store.get(name) for name in (SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY)}
    return found


def _user_ids_by_session(session_keys: list[str]) -> dict[str, int]:
    """Session key -> user id, for the signed-in sessions among ``session_keys`` (two queries).

    The same checks as ``django.contrib.auth.get_user``: an active user, and the session's hash of
    the password still matching, so a changed password ends the session.
    """
    sessions = {
        key: data
        for key, data in _session_data(session_keys).items()
        if data.get(SESSION_KEY) is not None and data.get(BACKEND_SESSION_KEY) is not None
    }
    if not sessions:
        return {}
    user_model = get_user_model()
    pk = user_model._meta.pk
    ids = {}
    for key, data in sessions.items():
        try:
            ids[key] = pk.to_python(data[SESSION_KEY])
        except ValidationError:
            continue  # not a user id of this model: an anonymous session
    users = user_model._default_manager.filter(pk__in=set(ids.values()), is_active=True).in_bulk()
    found = {}
    for key, user_id in ids.items():
        user = users.get(user_id)
        if user is not None and constant_time_compare(
            str(sessions[key].get(HASH_SESSION_KEY, "")), user.get_session_auth_hash()
        ):
            found[key] = user.pk
    return found


token_users = CachedLookup(_user_ids_by_token)
session_users = CachedLookup(_user_ids_by_session)


async def socket_user_id(*, query: dict[str, list[str]], headers: Iterable[tuple[bytes, bytes]]) -> int | None:
    """The user of a socket with this query string and these handshake headers; ``None`` if anonymous.

    A ``token`` parameter decides alone (an invalid one makes the socket anonymous); otherwise
    the session cookie, if any. Raises ``DatabaseError`` when a lookup cannot be made.
    """
    if "token" in query:
        return await token_users.get(query["token"][0])
    for name, value in headers:
        if name == b"cookie":
            cookie = SimpleCookie()
            try:
                cookie.load(value.decode("latin-1"))
            except CookieError:
                return None
            if settings.SESSION_COOKIE_NAME in cookie:
                return await session_users.get(cookie[settings.SESSION_COOKIE_NAME].value)
    return None
