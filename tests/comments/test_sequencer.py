"""The per-stream sequencer: group commit, one task per stream, bursts absorbed gaplessly."""

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from django.conf import settings
from pytest_django import DjangoAssertNumQueries
from rest_framework.authtoken.models import Token

from comments.models import Comment, CommentStatus
from comments.services import comment_accept, comments_publish_batch
from realtime.events import decode_published, decode_stream_message
from realtime.models import Stream, StreamEvent
from realtime.pubsub_channels import stream_channel
from tests.conftest import ApiUser, Stack
from tests.factories import StreamFactory, UserFactory
from tests.gateway.conftest import node_on_private_redis
from tests.support.api import comment_seqs, post_comment, wait_published
from tests.support.processes import CeleryWorker
from tests.support.ws import WsClient

pytestmark = pytest.mark.django_db(transaction=True)


def _pending(stream: Stream, count: int) -> list[Comment]:
    """Pending comments written directly, so no task is queued for them."""
    author = UserFactory.create()
    return [
        Comment.objects.create(
            stream=stream, author=author, body=f"c{i}", idempotency_key=f"k{i}", request_fingerprint="f"
        )
        for i in range(count)
    ]


@pytest.mark.services
@pytest.mark.parametrize("count", [1, 20, 300])
def test_a_batch_costs_the_same_queries_whatever_its_size(
    count: int, django_assert_num_queries: DjangoAssertNumQueries
) -> None:
    """BEGIN, claim, head update, multi-row insert, comment update, COMMIT: the same six, any size."""
    stream = StreamFactory.create(slug=f"b-{uuid.uuid4().hex[:8]}")
    comments = _pending(stream, count)
    listener = redis.Redis.from_url(settings.CHORUS_REDIS_URL).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(stream_channel(stream.id))

    with django_assert_num_queries(6):
        assert comments_publish_batch(stream_id=stream.id, limit=500) == count

    # every comment, in accept order, got the next number and exactly one event...
    by_seq = dict(Comment.objects.filter(stream=stream).values_list("seq", "id"))
    assert [by_seq[seq] for seq in range(1, count + 1)] == [c.id for c in comments]
    assert Stream.objects.get(id=stream.id).last_seq == count
    assert StreamEvent.objects.filter(stream=stream, type="comment.created").count() == count
    # ...and the events went out after commit, in order
    published: list[int | str] = []
    deadline = time.monotonic() + 10
    while len(published) < count and time.monotonic() < deadline:
        message = listener.get_message(timeout=1)  # None for the subscription's own confirmation too
        if message is not None:
            stream_id, body = decode_stream_message(message["data"])  # the channel is the stream's partition's
            if stream_id == stream.id:
                published.append(decode_published(body)[0])
    assert published == list(range(1, count + 1))
    listener.close()


@pytest.mark.services
def test_accepting_is_one_insert(django_assert_num_queries: DjangoAssertNumQueries) -> None:
    """The accept path writes the pending comment and nothing else: one statement, committed on its own."""
    stream = StreamFactory.create(slug=f"a-{uuid.uuid4().hex[:8]}")
    author = UserFactory.create()
    with django_assert_num_queries(1):
        comment, created = comment_accept(stream=stream, author_id=author.pk, body="hi", idempotency_key="k")
    assert created and comment.status == CommentStatus.PENDING


def test_accepts_queue_one_task_per_stream(api_user: ApiUser, http: httpx.Client) -> None:
    """150 comments on two streams before any worker runs: two task messages; then a few batches publish all."""
    streams = [StreamFactory.create(slug=f"q-{uuid.uuid4().hex[:8]}") for _ in range(2)]
    env = {"CHORUS_PUBLISH_REDRIVE_SECONDS": "30"}  # the marks outlive the posting, however slow the machine
    with node_on_private_redis("seq-node", variable="CELERY_BROKER_URL", env=env) as (node, broker):
        worker = CeleryWorker("seq-worker", env={"CELERY_BROKER_URL": broker.url, **env})
        try:
            jobs = [(streams[0], i) for i in range(100)] + [(streams[1], i) for i in range(50)]
            with ThreadPoolExecutor(8) as pool:
                responses = list(
                    pool.map(
                        lambda job: post_comment(http, node.http, job[0].slug, api_user.headers, f"#{job[1]}"), jobs
                    )
                )
            assert [r.status_code for r in responses] == [202] * 150
            assert redis.Redis.from_url(broker.url).llen(settings.CHORUS_TASK_QUEUE) == 2

            worker.start().wait_ready()
            wait_published([r.json()["id"] for r in responses], timeout=60)
            for stream, count in zip(streams, (100, 50), strict=True):
                seqs = comment_seqs(Comment.objects.filter(stream=stream))
                assert seqs == list(range(1, count + 1))
            batches = worker.run_log().count("published ")
            assert batches <= 4, f"{batches} batches for two streams"
        finally:
            worker.stop()


def test_a_burst_from_100_users_is_accepted_and_published_gapless(live: Stack, stream: Stream) -> None:
    """300 comments posted at once by 100 users on both nodes: all 202, published once, in order everywhere."""
    headers = [{"Authorization": f"Token {Token.objects.create(user=UserFactory.create()).key}"} for _ in range(100)]
    clients = [WsClient(f"{node.ws}/ws/streams/{stream.slug}/") for node in live.nodes]
    try:
        with httpx.Client(timeout=30) as http, ThreadPoolExecutor(32) as pool:
            responses = list(
                pool.map(
                    lambda i: post_comment(http, live.nodes[i % 2].http, stream.slug, headers[i % 100], f"burst {i}"),
                    range(300),
                )
            )
        assert [r.status_code for r in responses] == [202] * 300
        wait_published([r.json()["id"] for r in responses], timeout=60)
        assert comment_seqs(Comment.objects.filter(stream=stream)) == list(range(1, 301))
        for client in clients:
            assert [e["seq"] for e in client.wait_for_seq(300, timeout=30)] == list(range(1, 301))
    finally:
        for client in clients:
            client.close()
