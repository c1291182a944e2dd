"""Accepting a comment: the least work that keeps the promise of a ``202``.

The pending comment row is itself the durable record of the work still to do: one insert,
committed on its own. After commit the stream's sequencer is nudged
(``comments.services.publish.comments_publish_nudge``); if that nudge is lost (the broker down,
or losing its queue), the re-drive sweep publishes the comment anyway, so an accepted comment is
never lost.
"""

import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from comments.models import Comment, CommentStatus
from comments.services.publish import comments_publish_nudge
from project import bulk_sql
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


class StreamNotFound(Exception):
    """No stream with that id (it was deleted)."""

    def __init__(self, slug: str) -> None:
        super().__init__(f"no stream '{slug}'")
        self.slug = slug


@dataclass(frozen=True)
class AcceptRequest:
    """One comment to accept in a batch (``comments_accept_batch``)."""

    stream_id: int
    slug: str  # for the messages
    author_id: int
    body: str
    parent_id: uuid.UUID | None = None
    idempotency_key: str | None = None


@dataclass(frozen=True)
class AcceptOutcome:
    """What ``comment_accept`` would have returned or raised for one request of a batch."""

    comment: Comment | None = None
    created: bool = False
    error: Exception | None = None  # StreamNotFound, StreamClosed, InvalidParent, IdempotencyKeyReused


def comments_accept_batch(*, requests: Sequence[AcceptRequest]) -> list[AcceptOutcome]:
    """Accept many comments in one transaction (group commit); the outcome of each, in order.

    The same rules and outcomes as ``comment_accept`` one by one (closed stream, parent, the
    idempotency key: a retry returns the first comment, a different request under the same key is
    ``IdempotencyKeyReused``, two requests of one batch under one key are one comment), for a
    fixed number of statements whatever the batch's size: the streams, the parents (if any), one
    multi-row ``INSERT ... ON CONFLICT DO NOTHING``, the rows that made it, the ones that did not
    (if any). A node under load gathers the comments that arrive while the previous batch is
    being written, so the cost of a commit is shared by all of them. Nudges each stream once after
    commit.
    """
    outcomes: list[AcceptOutcome | None] = [None] * len(requests)
    streams = dict(Stream.objects.filter(id__in={r.stream_id for r in requests}).values_list("id", "closed_at"))
    parents = {r.parent_id for r in requests if r.parent_id is not None}
    published_parents = (
        dict(Comment.objects.filter(id__in=parents, status=CommentStatus.PUBLISHED).values_list("id", "stream_id"))
        if parents
        else {}
    )
    rows: dict[int, Comment] = {}
    for index, request in enumerate(requests):
        if request.stream_id not in streams:
            outcomes[index] = AcceptOutcome(error=StreamNotFound(request.slug))
        elif streams[request.stream_id] is not None:
            outcomes[index] = AcceptOutcome(error=StreamClosed(f"stream '{request.slug}' is closed"))
        elif request.parent_id is not None and published_parents.get(request.parent_id) != request.stream_id:
            error = InvalidParent(f"no published comment {request.parent_id} on stream '{request.slug}'")
            outcomes[index] = AcceptOutcome(error=error)
        else:
            rows[index] = Comment(
                stream_id=request.stream_id,
                author_id=request.author_id,
                body=request.body,
                parent_id=request.parent_id,
                idempotency_key=request.idempotency_key or f"auto:{uuid.uuid4()}",
                request_fingerprint=_fingerprint(
                    stream_id=request.stream_id, body=request.body, parent_id=request.parent_id
                ),
            )
    if rows:
        try:
            with transaction.atomic():
                inserted = _insert_new(list(rows.values()))
                existing = _existing_by_key([row for row in rows.values() if row.id not in inserted])
        except IntegrityError:
            # A stream deleted since it was read (its rows fail their foreign key): decide each
            # comment on its own, so one cannot fail the others.
            for index in rows:
                outcomes[index] = _accept_alone(requests[index])
            rows, inserted, existing = {}, set(), {}
        for index, row in rows.items():
            if row.id in inserted:
                outcomes[index] = AcceptOutcome(comment=row, created=True)
                continue
            first = existing.get((row.author_id, row.idempotency_key))
            if first is None:  # the conflicting comment is gone already (its stream was deleted)
                outcomes[index] = _accept_alone(requests[index])
            elif first.request_fingerprint != row.request_fingerprint:
                outcomes[index] = AcceptOutcome(error=IdempotencyKeyReused(first))
            else:
                outcomes[index] = AcceptOutcome(comment=first, created=False)
        for stream_id in {
            outcome.comment.stream_id
            for outcome in outcomes
            if outcome is not None and outcome.comment is not None and outcome.comment.status == CommentStatus.PENDING
        }:
            transaction.on_commit(functools.partial(comments_publish_nudge, stream_id=stream_id), robust=True)
    return [outcome for outcome in outcomes if outcome is not None]


def _insert_new(rows: list[Comment]) -> set[uuid.UUID]:
    """Insert the rows whose idempotency key is new (the others are skipped); the ids inserted."""
    if bulk_sql.supported():
        return bulk_sql.rows_insert(rows, ignore_conflicts=True)
    Comment.objects.bulk_create(rows, ignore_conflicts=True)
    return set(Comment.objects.filter(id__in=[row.id for row in rows]).values_list("id", flat=True))


def _accept_alone(request: AcceptRequest) -> AcceptOutcome:
    stream = Stream.objects.filter(id=request.stream_id).first()
    if stream is None:
        return AcceptOutcome(error=StreamNotFound(request.slug))
    try:
        comment, created = comment_accept(
            stream=stream,
            author_id=request.author_id,
            body=request.body,
            parent_id=request.parent_id,
            idempotency_key=request.idempotency_key,
        )
    except (StreamClosed, InvalidParent, IdempotencyKeyReused) as exc:
        return AcceptOutcome(error=exc)
    return AcceptOutcome(comment=comment, created=created)


def _existing_by_key(rows: list[Comment]) -> dict[tuple[int, str], Comment]:
    """The comments already holding these rows' (author, idempotency key), in one query."""
    if not rows:
        return {}
    match = Q()
    for row in rows:
        match |= Q(author_id=row.author_id, idempotency_key=row.idempotency_key)
    return {(c.author_id, c.idempotency_key): c for c in Comment.objects.filter(match)}
