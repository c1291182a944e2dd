"""Redis caches of comment reads that are never stale after a write.

- Pages of published comments, cache-aside, keyed by the stream's head sequence number. Every
  change a page can show (a comment published, and any later edit or delete) appends a stream
  event, which moves the head, so a write makes a new key: there is nothing to invalidate and no
  window in which an old page can be served for the new head. Old keys simply expire: a page with
  a deleted or replaced body stays in Redis until then, but no request reads the old head again.
- Stream counters (head, published comments), written through by the publish path after commit,
  and checked against the head on read: a counter behind the head is recomputed, never served.

Redis is an optimisation here: if it is down (or its breaker open) reads go to PostgreSQL.
"""

import contextlib
import json
import logging
from functools import lru_cache
from typing import Any

import pybreaker
import redis
from django.conf import settings

from comments.models import Comment, CommentStatus
from comments.representation import comment_as_dict
from comments.selectors import comment_page
from gateway.breakers import cache_breaker
from realtime.models import Stream

logger = logging.getLogger(__name__)

_UNAVAILABLE = (redis.RedisError, pybreaker.CircuitBreakerError)

# Counters move only from first-1 to last (the events this publish appended, all comments), else
# a read recomputes.
_COUNTERS_ADVANCE = """
local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
if head ~= nil and head == tonumber(ARGV[1]) - 1 then
  redis.call('HSET', KEYS[1], 'head', ARGV[2])
  redis.call('HINCRBY', KEYS[1], 'comments', tonumber(ARGV[2]) - tonumber(ARGV[1]) + 1)
  return 1
end
return 0
"""
# A recomputed value replaces the stored one only if it is for a later head.
_COUNTERS_FILL = """
local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
if head == nil or head < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'head', ARGV[1], 'comments', ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 0
"""
COUNTERS_TTL = 86400


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.CHORUS_REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25)


def page_key(*, stream_id: int, head: int, after: int, limit: int) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:cache:comments:{stream_id}:{head}:{after}:{limit}"


def counters_key(*, stream_id: int) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:cache:counters:{stream_id}"


def comment_page_cached(*, stream: Stream, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Published comments with ``seq > after`` as dicts (at most ``limit``) and whether more follow.

    ``stream`` must have been read in this request (its ``last_seq`` is the cache key): a page
    cached for that head, or one read from PostgreSQL and cached.
    """
    key = page_key(stream_id=stream.id, head=stream.last_seq, after=after, limit=limit)
    try:
        cached = cache_breaker.call(_redis().get, key)
    except _UNAVAILABLE:
        cached = None
    if cached is not None:
        page = json.loads(cached)
        return page["results"], page["has_more"]
    comments = comment_page(stream_id=stream.id, after=after, limit=limit + 1)
    results = [comment_as_dict(c) for c in comments[:limit]]
    has_more = len(comments) > limit
    try:
        cache_breaker.call(
            _redis().set,
            key,
            json.dumps({"results": results, "has_more": has_more}),
            ex=settings.CHORUS_COMMENT_PAGE_CACHE_SECONDS,
        )
    except _UNAVAILABLE:
        logger.info("comment page of stream %s not cached: Redis unavailable", stream.id)
    return results, has_more


def stream_counters(*, stream: Stream) -> dict[str, int]:
    """``{"head", "comments"}`` of a stream as of ``stream.last_seq`` (read in this request)."""
    key = counters_key(stream_id=stream.id)
    try:
        stored = cache_breaker.call(_redis().hmget, key, ["head", "comments"])
    except _UNAVAILABLE:
        stored = [None, None]
    if stored[0] is not None and stored[1] is not None and int(stored[0]) == stream.last_seq:
        return {"head": stream.last_seq, "comments": int(stored[1])}
    # Missing, behind (a write-through was lost) or ahead of this request's read: count at our head.
    count = Comment.objects.filter(
        stream_id=stream.id, status=CommentStatus.PUBLISHED, seq__lte=stream.last_seq
    ).count()
    with contextlib.suppress(*_UNAVAILABLE):
        cache_breaker.call(_redis().eval, _COUNTERS_FILL, 1, key, stream.last_seq, count, COUNTERS_TTL)
    return {"head": stream.last_seq, "comments": count}


def stream_counters_comments_published(*, stream_id: int, first_seq: int, last_seq: int) -> None:
    """Write-through after comments' events ``first_seq``..``last_seq`` committed; never raises
    (reads repair)."""
    try:
        cache_breaker.call(_redis().eval, _COUNTERS_ADVANCE, 1, counters_key(stream_id=stream_id), first_seq, last_seq)
    except _UNAVAILABLE:
        logger.info("counters of stream %s not advanced to %s: Redis unavailable", stream_id, last_seq)
