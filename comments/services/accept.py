"""Accepting a comment: the least work that keeps the promise of a ``202``.

The pending comment row is itself the durable record of the work still to do: one insert,
committed on its own. After commit the stream's sequencer is nudged
(``comments.services.publish.comments_publish_nudge``); if that nudge is lost (the broker down,
or losing its queue), the re-drive sweep publishes the comment anyway, so an accepted comment is
never lost.
"""

import hashlib
import json
import uuid

from django.db import IntegrityError, connection, transaction

from comments.models import Comment, CommentStatus
from comments.services.publish import comments_publish_nudge
from realtime.models import Stream


class IdempotencyKeyReused(Exception):
    """The idempotency key was already used by this author for a different request."""

    def __init__(self, comment: Comment) -> None:
        super().__init__(f"idempotency key already used for comment {comment.id}")
        self.comment = comment


class StreamClosed(Exception):
    """The stream is closed: it takes no new comments."""


class InvalidParent(Exception):
    """The parent comment does not exist on this stream or is not published."""


def _fingerprint(*, stream_id: int, body: str, parent_id: uuid.UUID | None) -> str:
    canonical = json.dumps([stream_id, body, str(parent_id) if parent_id else None])
    return hashlib.sha256(canonical.encode()).hexdigest()


def _insert(**fields: object) -> Comment:
    if connection.in_atomic_block:
        # Inside a caller's transaction a failed insert must not poison it: use a savepoint.
        with transaction.atomic():
            return Comment.objects.create(**fields)
    return Comment.objects.create(**fields)  # autocommit: one statement, committed on its own


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
    attempt made (and nudges its stream again if it is still pending); a key reused for a
    different request raises ``IdempotencyKeyReused``. Costs one ``INSERT`` (plus a lookup when a
    ``parent`` is given) and, after commit, one Redis round trip.
    """
    if stream.closed_at is not None:
        raise StreamClosed(f"stream '{stream.slug}' is closed")
    if (
        parent_id is not None
        and not Comment.objects.filter(id=parent_id, stream_id=stream.id, status=CommentStatus.PUBLISHED).exists()
    ):
        raise InvalidParent(f"no published comment {parent_id} on stream '{stream.slug}'")
    key = idempotency_key or f"auto:{uuid.uuid4()}"
    fingerprint = _fingerprint(stream_id=stream.id, body=body, parent_id=parent_id)
    try:
        comment = _insert(
            stream=stream,
            author_id=author_id,
            body=body,
            parent_id=parent_id,
            idempotency_key=key,
            request_fingerprint=fingerprint,
        )
        created = True
    except IntegrityError:
        comment = Comment.objects.get(author_id=author_id, idempotency_key=key)
        if comment.request_fingerprint != fingerprint:
            raise IdempotencyKeyReused(comment) from None
        created = False
    if comment.status == CommentStatus.PENDING:
        transaction.on_commit(lambda: comments_publish_nudge(stream_id=stream.id), robust=True)
    return comment, created
