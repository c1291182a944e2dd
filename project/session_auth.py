"""Session cookie -> user id without two database queries per request: a short per-process cache.

Django resolves a session on every request: it loads the session row, then the user, and checks
the session's auth hash against the user's (a changed password ends the session). This does the
same checks, keeps a positive answer for ``CHORUS_TOKEN_CACHE_SECONDS`` (the bound tokens have
too), and forgets a session at once in the process that logs it out. A logout, a password change
or a deactivation on another process is honoured within that bound. Failed lookups are never
cached. Used where Django's middleware does not run: the HTTP fast lane (``gateway/fast_lane.py``).
"""

from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.signals import user_logged_out
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from project.ttl_cache import TtlCache

_sessions: TtlCache[int] = TtlCache(settings.CHORUS_TOKEN_CACHE_SECONDS)


def session_user_cached(session_key: str) -> int | None:
    """The user id of session ``session_key`` if this process resolved it lately; no I/O."""
    return _sessions.get(session_key)


def session_user_id(session_key: str) -> int | None:
    """The id of the active user whose valid session this is, or None (sync: off the event loop)."""
    cached = _sessions.get(session_key)
    if cached is not None:
        return cached
    store = import_string(f"{settings.SESSION_ENGINE}.SessionStore")(session_key)
    raw_id = store.get(SESSION_KEY)
    backend = store.get(BACKEND_SESSION_KEY)
    if raw_id is None or backend not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = get_user_model()._default_manager.filter(pk=raw_id, is_active=True).first()
    if user is None:
        return None
    # The same check as django.contrib.auth.get_user: a changed password ends the session.
    if not constant_time_compare(store.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return None
    _sessions.put(session_key, user.pk)
    return int(user.pk)


def _forget_session(sender: Any, request: Any, **kwargs: Any) -> None:
    key = getattr(getattr(request, "session", None), "session_key", None)
    if key:
        _sessions.discard(key)


user_logged_out.connect(_forget_session, dispatch_uid="session_auth_forget_session")
