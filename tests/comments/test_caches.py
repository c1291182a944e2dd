"""The recent-comments page and stream counters from Redis: never stale after a write."""

import uuid

import httpx
import pytest
import redis
from django.conf import settings
from django.test import Client, override_settings

from comments import caches
from comments.services import comment_accept, comment_publish
from gateway.breakers import cache_breaker
from tests.conftest import ApiUser
from tests.factories import StreamFactory, UserFactory
from tests.support.api import post_comment, wait_published
from tests.support.processes import free_port


def _publish(stream, author, body: str) -> int:  # type: ignore[no-untyped-def]
    comment, _ = comment_accept(stream=stream, author_id=author.pk, body=body)
    return comment_publish(comment_id=comment.id).seq


@pytest.mark.django_db(transaction=True)
def test_a_cached_page_costs_one_query_and_every_new_event_is_seen_at_once(django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    """Second read: only the stream row; after a publish the next read already has the comment."""
    stream, author = StreamFactory(slug=f"c-{uuid.uuid4().hex[:8]}"), UserFactory()
    _publish(stream, author, "first")
    url = f"/api/v1/streams/{stream.slug}/comments"
    client = Client()
    assert [c["body"] for c in client.get(url).json()["results"]] == ["first"]
    with django_assert_num_queries(1):
        cached = client.get(url).json()
    assert [c["body"] for c in cached["results"]] == ["first"]
    assert cached["counts"] == {"head": 1, "comments": 1}

    # when: another comment is published (a new event, so a new head)
    _publish(stream, author, "second")

    # then: the very next read has it, and the counters were written through (no recount)
    with django_assert_num_queries(2):  # the stream row, then the page; the counters come from Redis
        fresh = client.get(url).json()
    assert [c["body"] for c in fresh["results"]] == ["first", "second"]
    assert fresh["counts"] == {"head": 2, "comments": 2}


@pytest.mark.django_db(transaction=True)
def test_counters_behind_the_head_are_recomputed_not_served() -> None:
    """A lost write-through (counters left at an old head) never shows: the read recounts."""
    stream, author = StreamFactory(slug=f"c-{uuid.uuid4().hex[:8]}"), UserFactory()
    _publish(stream, author, "one")
    stream.refresh_from_db()
    assert caches.stream_counters(stream=stream) == {"head": 1, "comments": 1}
    # given: an event whose write-through is lost
    redis.Redis.from_url(settings.CHORUS_REDIS_URL).hset(caches.counters_key(stream_id=stream.id), "head", 0)
    _publish(stream, author, "two")
    stream.refresh_from_db()
    assert caches.stream_counters(stream=stream) == {"head": 2, "comments": 2}


@pytest.mark.django_db(transaction=True)
def test_pages_are_served_from_postgresql_when_the_cache_redis_is_down() -> None:
    """The cache is an optimisation: with its Redis unreachable reads still answer 200."""
    stream, author = StreamFactory(slug=f"c-{uuid.uuid4().hex[:8]}"), UserFactory()
    _publish(stream, author, "kept")
    caches._redis.cache_clear()
    try:
        with override_settings(CHORUS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0"):
            response = Client().get(f"/api/v1/streams/{stream.slug}/comments")
    finally:
        caches._redis.cache_clear()
        cache_breaker.close()
    assert response.status_code == 200
    assert [c["body"] for c in response.json()["results"]] == ["kept"]


def test_a_writer_always_reads_their_own_write_on_any_node(live, api_user: ApiUser, stream, http: httpx.Client) -> None:  # type: ignore[no-untyped-def]
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
