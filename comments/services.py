"""Writes of comments: durable acceptance, then exactly-once publication."""

import hashlib
import json
import logging
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from comments.caches import stream_counters_comment_published
from comments.models import Comment, CommentStatus
from comments.representation import comment_as_dict
from delivery.faults import fault_point
from delivery.services import outbox_enqueue
from realtime.models import Stream, StreamEvent
from realtime.services import stream_event_append, stream_event_rebroadcast

logger = logging.getLogger(__name__)

COMMENT_CREATED = "comment.created"
PUBLISH_TASK = "comments.tasks.comment_publish_task"


class IdempotencyKeyReused(Exception):
    """The idempotency key was already used by this author for a different request."""

    def __init__(self, comment: Comment) -> None:
        super().__init__(f"idempotency key already used for comment {comment.id}")
        self.comment = comment


class InvalidParent(Exception):
    """The parent comment does not exist on this stream or is not published."""


def _fingerprint(*, stream_id: int, body: str, parent_id: uuid.UUID | None) -> str:
    canonical = json.dumps([stream_id, body, str(parent_id) if parent_id else None])
    return hashlib.sha256(canonical.encode()).hexdigest()


def comment_accept(
    *,
    stream: Stream,
    author_id: int,
    body: str,
    parent_id: uuid.UUID | None = None,
    idempotency_key: str | None = None,
) -> tuple[Comment, bool]:
    """Durably record a comment as ``pending``, once per (author, idempotency key).

    Returns ``(comment, created)``. A retry of the same request returns the comment the first
    attempt made; a key reused for a different request raises ``IdempotencyKeyReused``.
    The publish task is recorded in the same transaction (the outbox) and handed to Celery after
    commit, or by the outbox sweep if the broker is down, so an accepted comment is never lost.
    """
    if (
        parent_id is not None
        and not Comment.objects.filter(id=parent_id, stream_id=stream.id, status=CommentStatus.PUBLISHED).exists()
    ):
        raise InvalidParent(f"no published comment {parent_id} on stream '{stream.slug}'")
    key = idempotency_key or f"auto:{uuid.uuid4()}"
    fingerprint = _fingerprint(stream_id=stream.id, body=body, parent_id=parent_id)
    try:
        with transaction.atomic():
            comment = Comment.objects.create(
                stream=stream,
                author_id=author_id,
                body=body,
                parent_id=parent_id,
                idempotency_key=key,
                request_fingerprint=fingerprint,
            )
            outbox_enqueue(task_name=PUBLISH_TASK, kwargs={"comment_id": str(comment.id)})
    except IntegrityError:
        existing = Comment.objects.get(author_id=author_id, idempotency_key=key)
        if existing.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused(existing) from None
        return existing, False
    return comment, True


def comment_event_id(comment_id: uuid.UUID, event_type: str) -> uuid.UUID:
    """The event id of a comment's event: derived, so it can only ever be appended once."""
    return uuid.uuid5(comment_id, event_type)


def comment_publish(*, comment_id: uuid.UUID) -> StreamEvent:
    """Give a pending comment its sequence number and append ``comment.created``; idempotent.

    Locks the comment row, then (through ``stream_event_append``) the stream row, in that order.
    On a redelivery of an already published comment nothing is written: the existing event is
    broadcast again, in case the first attempt died between commit and broadcast.
    Raises ``Comment.DoesNotExist`` if the comment (or its stream) is gone.
    """
    with transaction.atomic():
        comment = Comment.objects.select_for_update(of=("self",)).select_related("author", "stream").get(id=comment_id)
        event_id = comment_event_id(comment.id, COMMENT_CREATED)
        if comment.status != CommentStatus.PENDING:
            event = StreamEvent.objects.get(event_id=event_id)
            stream_event_rebroadcast(event=event)
            return event
        fault_point("comment_publish", comment.body)
        now = timezone.now()
        comment.status = CommentStatus.PUBLISHED
        comment.published_at = now
        # The payload needs the seq, which the append assigns: reserve it through the append and
        # write the comment row with the same number in the same transaction.
        event = stream_event_append(
            stream_id=comment.stream_id,
            event_type=COMMENT_CREATED,
            event_id=event_id,
            payload_factory=lambda seq: _published_payload(comment, seq),
        )
        comment.seq = event.seq
        comment.save(update_fields=["status", "published_at", "seq", "updated_at"])
        transaction.on_commit(
            lambda: stream_counters_comment_published(stream_id=comment.stream_id, seq=event.seq), robust=True
        )
    logger.info("published comment %s as %s#%s", comment.id, comment.stream.slug, event.seq)
    return event


def _published_payload(comment: Comment, seq: int) -> dict[str, object]:
    comment.seq = seq
    return comment_as_dict(comment)
