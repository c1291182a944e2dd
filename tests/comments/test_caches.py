"""The recent-comments page and stream counters from Redis: never stale after a write."""

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from pytest_django import DjangoAssertNumQueries

from comments import caches
from comments.services import comment_accept, comment_publish
from project.breakers import cache_breaker
from project.redis import redis_client
from realtime.models import Stream
from tests.conftest import ApiUser, Stack
from tests.factories import StreamFactory, UserFactory
from tests.support.api import post_comment, wait_published
from tests.support.processes import ServedNode, free_port


def _publish(stream: Stream, author: User, body: str) -> int:
    comment, _ = comment_accept(stream=stream, author_id=author.pk, body=body)
    event = comment_publish(comment_id=comment.id)
    assert event is not None
    return event.seq


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_cached_page_costs_one_query_and_every_new_event_is_seen_at_once(
    django_assert_num_queries: DjangoAssertNumQueries,
) -> None:
    """Second read: only the stream row; after a publish the next read already has the comment."""
    stream, author = StreamFactory.create(slug=f"c-{uuid.uuid4().hex[:8]}"), UserFactory.create()
    _publish(stream, author, "first")
    url = f"/api/v1/streams/{stream.slug}/comments"
    client = Client()
    assert [c["body"] for c in client.get(url).json()["results"]] == ["first"]
    with django_assert_num_queries(1):
        cached = client.get(url).json()
    assert [c["body"] for c in cached["results"]] == ["first"]
    assert cached["counts"] == {"epoch": 1, "head": 1, "comments": 1}

    # when: another comment is published (a new event, so a new head)
    _publish(stream, author, "second")

    # then: the very next read has it, and the counters were written through (no recount)
    with django_assert_num_queries(2):  # the stream row, then the page; the counters come from Redis
        fresh = client.get(url).json()
    assert [c["body"] for c in fresh["results"]] == ["first", "second"]
    assert fresh["counts"] == {"epoch": 1, "head": 2, "comments": 2}


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_counters_behind_the_head_are_recomputed_not_served() -> None:
    """A lost write-through (counters left at an old head) never shows: the read recounts."""
    stream, author = StreamFactory.create(slug=f"c-{uuid.uuid4().hex[:8]}"), UserFactory.create()
    _publish(stream, author, "one")
    stream.refresh_from_db()
    assert caches.stream_counters(stream=stream) == {"head": 1, "comments": 1}
    # given: an event whose write-through is lost
    redis.Redis.from_url(settings.CHORUS_REDIS_URL).hset(caches.counters_key(stream_id=stream.id), "head", 0)
    _publish(stream, author, "two")
    stream.refresh_from_db()
    assert caches.stream_counters(stream=stream) == {"head": 2, "comments": 2}


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_pages_are_served_from_postgresql_when_the_cache_redis_is_down() -> None:
    """The cache is an optimisation: with its Redis unreachable reads still answer 200."""
    stream, author = StreamFactory.create(slug=f"c-{uuid.uuid4().hex[:8]}"), UserFactory.create()
    _publish(stream, author, "kept")
    redis_client.cache_clear()
    try:
        with override_settings(CHORUS_CACHE_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
            response = Client().get(f"/api/v1/streams/{stream.slug}/comments")
    finally:
        redis_client.cache_clear()
        cache_breaker.close()
    assert response.status_code == 200
    assert [c["body"] for c in response.json()["results"]] == ["kept"]


def test_a_writer_always_reads_their_own_write_on_any_node(
    live: Stack, api_user: ApiUser, stream: Stream, http: httpx.Client
) -> None:
    """Write on one node, read on both, with both pages cached just before each write."""
    node_a, node_b = live.nodes
    for i in range(4):
        for node in (node_a, node_b):
            http.get(f"{node.http}/api/v1/streams/{stream.slug}/comments")  # warm the cache
        accepted = post_comment(http, node_a.http, stream.slug, api_user.headers, f"mine {i}")
        assert accepted.status_code == 202
        wait_published([accepted.json()["id"]])
        for node in (node_b, node_a):
            page = http.get(f"{node.http}/api/v1/streams/{stream.slug}/comments").json()
            assert page["results"][-1]["id"] == accepted.json()["id"]
            assert page["counts"]["comments"] == i + 1


CRAWL_CAPACITY, CRAWL_RATE = 120, 1.0


@pytest.fixture
def crawled_node(django_db_setup: None) -> Iterator[tuple[ServedNode, str]]:
    """A node with its own key prefix (its cache keys can be counted) and a small anonymous read bucket."""
    prefix = f"{settings.CHORUS_REDIS_PREFIX}-crawl-{uuid.uuid4().hex[:8]}"
    env = {
        "CHORUS_REDIS_PREFIX": prefix,
        "CHORUS_RATE_LIMITS": json.dumps({"regular": {"reads": [CRAWL_CAPACITY, CRAWL_RATE]}}),
        "CHORUS_TIER_HOT_ABOVE": "1000000",
    }
    node = ServedNode("cache-crawled", env=env).start()
    try:
        yield node.wait_ready(), prefix
    finally:
        node.stop()


def _page_keys(prefix: str) -> int:
    return len(list(redis.Redis.from_url(settings.CHORUS_REDIS_URL).scan_iter(f"{prefix}:cache:comments:*")))


def test_a_crawler_cannot_grow_the_page_cache_and_anonymous_reads_are_limited(
    crawled_node, api_user: ApiUser, http: httpx.Client
) -> None:
    """Walking every ``after`` (and ``limit``): anonymous gets 429 past its bucket; nobody grows the cache."""
    node, prefix = crawled_node
    stream = StreamFactory.create(slug=f"c-{uuid.uuid4().hex[:8]}")
    head = 2 * settings.CHORUS_PAGE_SIZE_DEFAULT + 20
    for i in range(head):
        _publish(stream, api_user.user, f"comment {i}")
    url = f"{node.http}/api/v1/streams/{stream.slug}/comments"
    # what a client of the default page size can share: the first page, and the pages that reach the head
    bound = 1 + settings.CHORUS_PAGE_SIZE_DEFAULT + 1

    # when: an anonymous crawler walks every after value, then past the head
    started = time.monotonic()
    anonymous = [http.get(url, params={"after": after}) for after in range(3 * head)]
    elapsed = time.monotonic() - started

    # then: its address's read bucket refuses it, in the API's JSON shape
    admitted = [r for r in anonymous if r.status_code == 200]
    refused = [r for r in anonymous if r.status_code == 429]
    assert len(admitted) + len(refused) == len(anonymous)
    assert CRAWL_CAPACITY <= len(admitted) <= CRAWL_CAPACITY + CRAWL_RATE * elapsed + 1
    assert refused[0].json()["code"] == "throttled" and int(refused[0].headers["Retry-After"]) >= 1
    assert _page_keys(prefix) <= bound

    # when: a signed-in crawler (no read limit) walks every after value with every page size
    for after in range(0, 3 * head, 3):
        response = http.get(url, params={"after": after, "limit": after % 97 + 1}, headers=api_user.headers)
        assert response.status_code == 200
        response = http.get(url, params={"after": after}, headers=api_user.headers)
        assert response.status_code == 200

    # then: the cache still holds only the shared pages
    assert _page_keys(prefix) <= bound


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_page_too_large_to_cache_is_served_from_postgresql() -> None:
    """Values over CHORUS_COMMENT_PAGE_CACHE_MAX_BYTES are not stored: a few huge comments cannot fill Redis."""
    stream, author = StreamFactory.create(slug=f"c-{uuid.uuid4().hex[:8]}"), UserFactory.create()
    _publish(stream, author, "x" * 1500)
    client = redis.Redis.from_url(settings.CHORUS_REDIS_URL)
    pattern = f"{settings.CHORUS_REDIS_PREFIX}:cache:comments:{stream.id}:*"
    with override_settings(CHORUS_COMMENT_PAGE_CACHE_MAX_BYTES=1000):
        first = Client().get(f"/api/v1/streams/{stream.slug}/comments")
        assert first.status_code == 200 and first.json()["results"][0]["body"] == "x" * 1500
        assert list(client.scan_iter(pattern)) == []
    # and a page under the cap is cached
    Client().get(f"/api/v1/streams/{stream.slug}/comments")
    assert len(list(client.scan_iter(pattern))) == 1
