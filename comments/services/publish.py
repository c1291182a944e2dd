"""Publishing comments: a per-stream sequencer that publishes pending comments in batches.

A comment is accepted as a ``pending`` row (``comments.services.accept``). The sequencer of its
stream gives pending comments their sequence numbers in batches (group commit): one transaction
claims up to ``CHORUS_PUBLISH_BATCH`` of them, moves the stream head once, appends their
``comment.created`` events in one multi-row insert and marks them published; after commit the
events go to every node in one Redis pipeline. A stream's order is the sequencer's commit order.

Scheduling: the sequencer runs as a Celery task per stream (``stream_comments_publish_task``), at
most one queued or running per stream. A Redis mark per stream says "a task is queued or running
for this stream"; it expires after ``CHORUS_PUBLISH_REDRIVE_SECONDS`` unless the running task
refreshes it. An accepted comment sets the mark if it is free and then sends the task; while the
mark is set, the queued or running task finds the comment. A task lets go of the mark before its
last look for pending comments, so a comment is either seen by that look or sets the mark itself.

Whatever happens to the task's message (a broker that loses its queue, a purge, a worker that
dies with it), the beat sweep ``comments_pending_redrive`` re-drives every stream with a comment
pending for longer than ``CHORUS_PUBLISH_REDRIVE_SECONDS``: the pending rows in PostgreSQL are the
record of the work, never the broker.

Exactly once: each comment's ``comment.created`` event id is derived from the comment and unique,
and comments are claimed with ``FOR UPDATE SKIP LOCKED``, so two sequencers never publish one
comment twice. A comment whose own publication fails (a payload that cannot be built) is set
aside (``publish_isolated``) and handed to its own retrying task, so it never blocks its stream.
"""

import functools
import logging
import time
import uuid
from datetime import datetime, timedelta

import pybreaker
import redis
from celery import current_app
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Case, When
from django.utils import timezone

from comments.caches import stream_counters_comments_published
from comments.models import Comment, CommentStatus
from comments.representation import comment_as_dict
from delivery.faults import fault_point
from delivery.services import outbox_enqueue
from project import bulk_sql
from project.breakers import broker_breaker, cache_breaker
from project.redis import redis_client
from realtime.models import StreamEvent
from realtime.services import NewEvent, stream_event_rebroadcast, stream_events_append

logger = logging.getLogger(__name__)

COMMENT_CREATED = "comment.created"
STREAM_PUBLISH_TASK = "comments.tasks.stream_comments_publish_task"
# One comment set aside from the batches, published on its own (retried, then dead-lettered).
PUBLISH_TASK = "comments.tasks.comment_publish_task"


def comment_event_id(comment_id: uuid.UUID, event_type: str) -> uuid.UUID:
    """The event id of a comment's event: derived, so it can only ever be appended once."""
    return uuid.uuid5(comment_id, event_type)


# --- the schedule mark ---------------------------------------------------------------------------


_REDIS_DOWN = (redis.RedisError, pybreaker.CircuitBreakerError)


def _mark_key(stream_id: int) -> str:
    return f"{settings.CHORUS_REDIS_PREFIX}:publish:scheduled:{stream_id}"


def _mark_take(stream_id: int) -> bool:
    """Set the stream's mark if it is free; True if this caller now owns the next task.

    Behind the Redis breaker, so a Redis that does not answer costs an accept nothing.
    """
    key = _mark_key(stream_id)
    return bool(cache_breaker.call(redis_client().set, key, 1, nx=True, ex=settings.CHORUS_PUBLISH_REDRIVE_SECONDS))


def _mark_refresh(stream_id: int) -> None:
    """The running task holds the mark: keep it from expiring (never raises)."""
    try:
        redis_client().set(_mark_key(stream_id), 1, ex=settings.CHORUS_PUBLISH_REDRIVE_SECONDS)
    except redis.RedisError:
        logger.info("could not refresh the publish mark of stream %s", stream_id)


def _mark_release(stream_id: int) -> None:
    try:
        redis_client().delete(_mark_key(stream_id))
    except redis.RedisError:
        logger.info("could not release the publish mark of stream %s; it expires on its own", stream_id)


def _send_stream_task(stream_id: int) -> bool:
    try:
        broker_breaker.call(current_app.send_task, STREAM_PUBLISH_TASK, kwargs={"stream_id": stream_id})
    except pybreaker.CircuitBreakerError:
        return False
    except Exception as exc:  # kombu and redis-py raise many types for "broker down"
        logger.warning("could not queue the publish task of stream %s: %s", stream_id, exc)
        return False
    return True


def comments_publish_nudge(*, stream_id: int) -> None:
    """Make sure a sequencer task is queued or running for the stream (after a comment committed).

    Sends the task only if this call set the stream's mark; otherwise the task that set it will
    find the comment. Never raises: a lost nudge is repaired by ``comments_pending_redrive``.
    """
    try:
        if not _mark_take(stream_id):
            return
    except _REDIS_DOWN as exc:
        # Without the mark nobody coalesces: send anyway, a second task on a stream is harmless.
        logger.info("publish mark of stream %s unavailable (%r); sending the task", stream_id, exc)
    if not _send_stream_task(stream_id):
        _mark_release(stream_id)  # let the next accept, or the sweep, try again


# --- the sequencer -------------------------------------------------------------------------------


def _published_payload(comment: Comment, seq: int) -> dict[str, object]:
    comment.seq = seq
    return comment_as_dict(comment)


def _sequence(*, stream_id: int, comments: list[Comment]) -> list[StreamEvent]:
    """Give ``comments`` (rows locked by the caller, in order) their numbers and events, and mark
    them published: one head update, one multi-row insert, one update of the comments."""
    now = timezone.now()
    for comment in comments:
        comment.status = CommentStatus.PUBLISHED
        comment.published_at = now
    events = stream_events_append(
        stream_id=stream_id,
        events=[
            NewEvent(
                event_type=COMMENT_CREATED,
                event_id=comment_event_id(comment.id, COMMENT_CREATED),
                payload_factory=functools.partial(_published_payload, comment),
                subject=comment.id,
            )
            for comment in comments
        ],
    )
    _comments_mark_published(ids=[comment.id for comment in comments], seqs=[event.seq for event in events], now=now)
    first, last = events[0].seq, events[-1].seq
    transaction.on_commit(
        lambda: stream_counters_comments_published(stream_id=stream_id, first_seq=first, last_seq=last),
        robust=True,
    )
    return events


def _comments_mark_published(*, ids: list[uuid.UUID], seqs: list[int], now: datetime) -> None:
    """Mark the comments published with their numbers, in one statement. On PostgreSQL the numbers
    go as one JSON document: the ORM's ``CASE WHEN`` per row cost more to build than to run."""
    if bulk_sql.supported():
        bulk_sql.rows_update(
            Comment,
            key="id",
            rows=({"id": comment_id, "seq": seq} for comment_id, seq in zip(ids, seqs, strict=True)),
            common={
                "status": CommentStatus.PUBLISHED.value,
                "published_at": now,
                "updated_at": now,
                "publish_isolated": False,
            },
        )
        return
    Comment.objects.filter(id__in=ids).update(
        status=CommentStatus.PUBLISHED,
        published_at=now,
        updated_at=now,
        publish_isolated=False,
        seq=Case(*(When(id=comment_id, then=seq) for comment_id, seq in zip(ids, seqs, strict=True))),
    )


def _isolate(comment: Comment, exc: Exception) -> None:
    """Take a comment whose publication fails out of the batches, into its own retrying task."""
    logger.warning("comment %s set aside from its stream's batches: %r", comment.id, exc)
    Comment.objects.filter(id=comment.id, status=CommentStatus.PENDING).update(publish_isolated=True)
    outbox_enqueue(task_name=PUBLISH_TASK, kwargs={"comment_id": str(comment.id)})


# What publishing reads of a comment, its author and its stream (``comment_as_dict``): not the edit
# vectors (JSON) nor the user's other columns, which the ORM would otherwise load and convert per row.
_PUBLISH_FIELDS = (
    "id", "stream_id", "author_id", "body", "parent_id", "seq", "status", "version", "created_at",
    f"author__{get_user_model().USERNAME_FIELD}", "stream__slug",
)  # fmt: skip


def comments_publish_batch(*, stream_id: int, limit: int | None = None) -> int:
    """Publish up to ``limit`` pending comments of a stream in one transaction; returns how many
    comments it claimed (published or set aside).

    Claims with ``FOR UPDATE SKIP LOCKED`` (comment rows first, then the stream row through the
    head update, the same order as every other writer), so concurrent sequencers of one stream
    never wait on, or publish, each other's comments. Emits their ``comment.created`` events
    after commit, in one pipeline.
    """
    limit = limit or settings.CHORUS_PUBLISH_BATCH
    with transaction.atomic():
        claimed = list(
            Comment.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("author", "stream")
            .only(*_PUBLISH_FIELDS)
            .filter(stream_id=stream_id, status=CommentStatus.PENDING, publish_isolated=False)
            .order_by("created_at", "id")[:limit]
        )
        ready = []
        for comment in claimed:
            try:
                fault_point("comment_publish", comment.body)
                comment_as_dict(comment)  # a comment whose payload cannot be built fails here, alone
            except Exception as exc:
                _isolate(comment, exc)
            else:
                ready.append(comment)
        if ready:
            _sequence(stream_id=stream_id, comments=ready)
    if ready:
        logger.info("published %d comments of stream %s as #%s-#%s", len(ready), stream_id, ready[0].seq, ready[-1].seq)
    return len(claimed)


def comments_publish_pending(*, stream_id: int) -> None:
    """Publish what is pending for the stream, batch after batch; the body of the stream's task.

    Runs for at most ``CHORUS_PUBLISH_TASK_BUDGET_SECONDS`` and then queues its successor (keeping
    the mark), so one busy stream cannot hold a worker while other streams wait.
    """
    batch = settings.CHORUS_PUBLISH_BATCH
    deadline = time.monotonic() + settings.CHORUS_PUBLISH_TASK_BUDGET_SECONDS
    _mark_refresh(stream_id)  # the mark may have expired while the task waited in the queue
    while True:
        if comments_publish_batch(stream_id=stream_id, limit=batch) < batch:
            # The stream looked drained: let go of the mark, then look once more. A comment
            # committed before the release is found by this look; one committed after it sets
            # the mark itself and queues the next task.
            _mark_release(stream_id)
            if comments_publish_batch(stream_id=stream_id, limit=batch) == 0:
                return
            try:
                if not _mark_take(stream_id):
                    return  # a comment accepted meanwhile queued the next task
            except _REDIS_DOWN:
                pass  # go on without the mark: a second task on a stream is harmless
        else:
            _mark_refresh(stream_id)
        if time.monotonic() >= deadline:
            if not _send_stream_task(stream_id):
                _mark_release(stream_id)
            return


def comment_publish(*, comment_id: uuid.UUID) -> StreamEvent | None:
    """Publish one comment now, on its own; idempotent.

    For what cannot wait for, or was set aside from, the stream's batches: a saga step that needs
    its comment published, a comment whose publication failed in a batch. Locks the comment row,
    then the stream row, like the batches. On a redelivery of an already published comment
    nothing is written: the existing event is broadcast again, in case the first attempt died
    between commit and broadcast. A comment deleted while still pending is never published
    (returns ``None``). Raises ``Comment.DoesNotExist`` if the comment (or its stream) is gone.
    """
    with transaction.atomic():
        comment = Comment.objects.select_for_update(of=("self",)).select_related("author", "stream").get(id=comment_id)
        if comment.status != CommentStatus.PENDING:
            event = StreamEvent.objects.filter(event_id=comment_event_id(comment.id, COMMENT_CREATED)).first()
            if event is None:  # deleted before it was ever published
                return None
            stream_event_rebroadcast(event=event)
            return event
        fault_point("comment_publish", comment.body)
        (event,) = _sequence(stream_id=comment.stream_id, comments=[comment])
    logger.info("published comment %s as %s#%s", comment.id, comment.stream.slug, event.seq)
    return event


# --- healing ---------------------------------------------------------------------------------------


def comments_pending_redrive(*, older_than_seconds: float) -> list[int]:
    """Re-drive the sequencer of every stream with a comment pending longer than that.

    Whatever happened to the stream's task (lost with the broker's memory, purged, dead with its
    worker), its mark has expired by then, so this sends a new one; a stream whose task is still
    queued or running within the mark's lifetime is left alone. Returns the streams re-driven.
    """
    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    stream_ids = list(
        Comment.objects.filter(status=CommentStatus.PENDING, publish_isolated=False, created_at__lt=cutoff)
        .order_by()
        .values_list("stream_id", flat=True)
        .distinct()
    )
    redriven = []
    for stream_id in stream_ids:
        try:
            if not _mark_take(stream_id):
                continue
        except _REDIS_DOWN:
            pass  # no mark to coalesce with: send anyway
        logger.warning("comments of stream %s pending for over %ss: re-driving", stream_id, older_than_seconds)
        if _send_stream_task(stream_id):
            redriven.append(stream_id)
        else:
            _mark_release(stream_id)
    return redriven
