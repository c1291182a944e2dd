"""Redis caches of comment reads that are never stale after a write.

- Pages of published comments, cache-aside, each stored with the stream's position (epoch and
  head sequence number) it was read at and served only for that same position. Every change a page can show (a comment
  published, and any later edit or delete) appends a stream event, which moves the head, so after
  a write every stored page is a miss: there is nothing to invalidate and no window in which an
  old page can be served for the new head. The next read overwrites it.
- Only pages that many clients share are cached, each under one key per (stream, after): at the
  default page size, the first page and the pages that reach the head (clients catching up or
  polling), and only under ``CHORUS_COMMENT_PAGE_CACHE_MAX_BYTES``. A crawler walking every
  ``after`` or page size therefore cannot grow the cache: a stream has at most page size + 2 keys
  here, however many heads, offsets and sizes are read.
- Stream counters (head, published comments), written through by the publish path after commit,
  and checked against the position on read: a counter behind the head is recomputed, never served.
  The epoch is part of both checks because a restore from a backup can bring a head back to a
  number it had before, with other comments (``realtime.services.stream_epoch_bump``).

Redis (``CHORUS_CACHE_REDIS_URL``) is an optimisation here: if it is down (or its breaker open)
reads go to PostgreSQL, and whatever it evicts is recomputed.
"""

import contextlib
import json
import logging
from typing import Any

import pybreaker
import redis
from django.conf import settings

from comments.models import Comment, CommentStatus
from comments.representation import comment_as_dict
from comments.selectors import comment_page
from project.breakers import cache_breaker
from project.redis import redis_client
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
# A recomputed value replaces the stored one only if it is for a later head, or another epoch.
# (An advance in an old epoch only moves a value no read serves: reads check the epoch.)
_COUNTERS_FILL = """
local head = tonumber(redis.call('HGET', KEYS[1], 'head'))
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if head == nil or head < tonumber(ARGV[1]) or epoch ~= ARGV[4] then
  redis.call('HSET', KEYS[1], 'head', ARGV[1], 'comments', ARGV[2], 'epoch', ARGV[4])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return 0
"""
COUNTERS_TTL = 86400


def _redis() -> redis.Redis:
    return redis_client("cache")


def page_key(*, stream_id: int, after: int) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:cache:comments:{stream_id}:{after}"


def page_shared(*, head: int, after: int, limit: int) -> bool:
    """Whether many clients read this page: the first page or one reaching ``head``, at the default size."""
    return limit == settings.CHORUS_PAGE_SIZE_DEFAULT and (after == 0 or head - limit <= after <= head)


def counters_key(*, stream_id: int) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:cache:counters:{stream_id}"


def comment_page_cached(*, stream: Stream, after: int, limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Published comments with ``seq > after`` as dicts (at most ``limit``) and whether more follow.

    ``stream`` must have been read in this request (its ``last_seq`` decides whether a cached page
    is current): a shared page cached for that head, or one read from PostgreSQL (and cached if
    shared and small enough).
    """
    head = stream.last_seq
    shared = page_shared(head=head, after=after, limit=limit)
    key = page_key(stream_id=stream.id, after=after)
    if shared:
        try:
            cached = cache_breaker.call(_redis().get, key)
        except _UNAVAILABLE:
            cached = None
        if cached is not None:
            page = json.loads(cached)
            if page["head"] == head and page.get("epoch") == stream.epoch:
                return page["results"], page["has_more"]
    comments = comment_page(stream_id=stream.id, after=after, limit=limit + 1)
    results = [comment_as_dict(c) for c in comments[:limit]]
    has_more = len(comments) > limit
    if shared:
        page = {"epoch": stream.epoch, "head": head, "results": results, "has_more": has_more}
        value = json.dumps(page, ensure_ascii=False).encode()
        if len(value) <= settings.CHORUS_COMMENT_PAGE_CACHE_MAX_BYTES:
            try:
                cache_breaker.call(_redis().set, key, value, ex=settings.CHORUS_COMMENT_PAGE_CACHE_SECONDS)
            except _UNAVAILABLE:
                logger.info("comment page of stream %s not cached: Redis unavailable", stream.id)
    return results, has_more


def stream_counters(*, stream: Stream) -> dict[str, int]:
    """``{"head", "comments"}`` of a stream as of ``stream.last_seq`` (read in this request)."""
    key = counters_key(stream_id=stream.id)
    try:
        stored = cache_breaker.call(_redis().hmget, key, ["head", "comments", "epoch"])
    except _UNAVAILABLE:
        stored = [None, None, None]
    if (
        stored[0] is not None
        and stored[1] is not None
        and int(stored[0]) == stream.last_seq
        and stored[2] is not None
        and int(stored[2]) == stream.epoch
    ):
        return {"head": stream.last_seq, "comments": int(stored[1])}
    # Missing, behind (a write-through was lost) or ahead of this request's read: count at our head.
    count = Comment.objects.filter(
        stream_id=stream.id, status=CommentStatus.PUBLISHED, seq__lte=stream.last_seq
    ).count()
    with contextlib.suppress(*_UNAVAILABLE):
        cache_breaker.call(_redis().eval, _COUNTERS_FILL, 1, key, stream.last_seq, count, COUNTERS_TTL, stream.epoch)
    return {"head": stream.last_seq, "comments": count}


def stream_counters_comments_published(*, stream_id: int, first_seq: int, last_seq: int) -> None:
    """Write-through after comments' events ``first_seq``..``last_seq`` committed; never raises
    (reads repair)."""
    try:
        cache_breaker.call(_redis().eval, _COUNTERS_ADVANCE, 1, counters_key(stream_id=stream_id), first_seq, last_seq)
    except _UNAVAILABLE:
        logger.info("counters of stream %s not advanced to %s: Redis unavailable", stream_id, last_seq)
