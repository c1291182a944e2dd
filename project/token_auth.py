"""``Authorization: Token`` without a database query per request: a short per-process cache.

DRF's ``TokenAuthentication`` reads the token and its user from PostgreSQL on every request. Here
a successful lookup is kept in process for ``CHORUS_TOKEN_CACHE_SECONDS`` (0 turns it off): a
token deleted or a user deactivated on another process is still honoured for at most that long
by a process that had just seen it; in the process that made the change it ends at once. Failed
lookups are never cached. The REST API (``CachedTokenAuthentication``, in ``REST_FRAMEWORK``) and
the HTTP fast lane (``gateway/fast_lane.py``) share this one cache.
"""

import copy
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token

from project.ttl_cache import MAX_ENTRIES, TtlCache

_tokens: TtlCache[Token] = TtlCache(settings.CHORUS_TOKEN_CACHE_SECONDS)
_key_of_user: dict[int, str] = {}  # to forget a user's token when the user changes


def _remember(token: Token) -> None:
    _tokens.put(token.key, token)
    if len(_key_of_user) >= MAX_ENTRIES:
        _key_of_user.clear()
    _key_of_user[token.user_id] = token.key


def token_cached(key: str) -> Token | None:
    """The active token ``key`` (with its user) if this process looked it up lately; no I/O."""
    return _tokens.get(key)


def token_load(key: str) -> Token | None:
    """The active token ``key`` with its user, from the cache or the database; None if there is none."""
    token = _tokens.get(key)
    if token is None:
        token = Token.objects.select_related("user").filter(key=key).first()
        if token is None or not token.user.is_active:
            return None
        _remember(token)
    return token


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, the same answers, with the lookup cached (see the module)."""

    def authenticate_credentials(self, key: str) -> tuple[Any, Token]:
        token = _tokens.get(key)
        if token is None:
            _, token = super().authenticate_credentials(key)  # the 401s, word for word
            _remember(token)
        # Each request gets its own user object: a view may set attributes on request.user.
        return copy.copy(token.user), token


def _forget_token(sender: type, instance: Token, **kwargs: Any) -> None:
    _tokens.discard(instance.key)


def _forget_user(sender: type, instance: Any, **kwargs: Any) -> None:
    key = _key_of_user.pop(instance.pk, None)
    if key is not None:
        _tokens.discard(key)


post_delete.connect(_forget_token, sender=Token, dispatch_uid="token_auth_forget_token")
post_save.connect(_forget_user, sender=get_user_model(), dispatch_uid="token_auth_forget_user")
