"""Writes of comments: durable acceptance, then exactly-once publication."""

import hashlib
import json
import logging
import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from comments.caches import stream_counters_comment_published
from comments.models import Comment, CommentRevision, CommentStatus
from comments.replication import ReplicatedEdit, edit_key, local_edit, vector_merge
from comments.representation import comment_as_dict
from delivery.faults import fault_point
from delivery.services import outbox_enqueue
from realtime.models import Stream, StreamEvent
from realtime.services import stream_event_append, stream_event_rebroadcast

logger = logging.getLogger(__name__)

COMMENT_CREATED = "comment.created"
PUBLISH_TASK = "comments.tasks.comment_publish_task"
COMMENT_EDITED = "comment.edited"
COMMENT_DELETED = "comment.deleted"


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


def comment_publish(*, comment_id: uuid.UUID) -> StreamEvent | None:
    """Give a pending comment its sequence number and append ``comment.created``; idempotent.

    Locks the comment row, then (through ``stream_event_append``) the stream row, in that order.
    On a redelivery of an already published comment nothing is written: the existing event is
    broadcast again, in case the first attempt died between commit and broadcast. A comment
    deleted while still pending is never published (returns ``None``).
    Raises ``Comment.DoesNotExist`` if the comment (or its stream) is gone.
    """
    with transaction.atomic():
        comment = Comment.objects.select_for_update(of=("self",)).select_related("author", "stream").get(id=comment_id)
        event_id = comment_event_id(comment.id, COMMENT_CREATED)
        if comment.status != CommentStatus.PENDING:
            event = StreamEvent.objects.filter(event_id=event_id).first()
            if event is None:  # deleted before it was ever published
                return None
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


# --- edits and deletes ---------------------------------------------------------------------------


class CommentNotFound(Exception):
    """No such comment (or it is deleted)."""


class CommentNotEditable(Exception):
    """The comment is still pending publication."""


class CommentChangeForbidden(Exception):
    """Only the author or a staff member may edit or delete a comment."""


class VersionMismatch(Exception):
    """The comment changed since the version the client read (If-Match failed)."""

    def __init__(self, current: int) -> None:
        super().__init__(f"comment is at version {current}")
        self.current = current


def _may_change(comment: Comment, actor_id: int) -> bool:
    if comment.author_id == actor_id:
        return True
    return get_user_model().objects.filter(pk=actor_id, is_staff=True, is_active=True).exists()


def _edited_event(comment: Comment, edit_id: str) -> None:
    stream_event_append(
        stream_id=comment.stream_id,
        event_type=COMMENT_EDITED,
        event_id=uuid.uuid5(comment.id, f"{COMMENT_EDITED}:{edit_id}"),
        payload=comment_as_dict(comment),
    )


def _keep_current_body(comment: Comment) -> None:
    CommentRevision.objects.create(
        comment=comment, edit_id=comment.edit_id or "original", body=comment.body, vector=comment.edit_vector
    )


def comment_edit(*, comment_id: uuid.UUID, editor_id: int, body: str, expected_version: int) -> Comment:
    """Replace a published comment's body if it is still at ``expected_version`` (If-Match).

    The decision is one conditional ``UPDATE ... WHERE id = %s AND version = %s``: of two
    concurrent edits of the same version exactly one succeeds, the other gets ``VersionMismatch``.
    The edit gets this region's next version-vector entry (``comments.replication``), the old
    body is kept as a ``superseded`` revision, and ``comment.edited`` is appended after it.
    Raises ``CommentNotFound``, ``CommentChangeForbidden``, ``CommentNotEditable``, ``VersionMismatch``.
    """
    with transaction.atomic():
        comment = Comment.objects.select_related("author", "stream").filter(id=comment_id).first()
        if comment is None or comment.status == CommentStatus.DELETED:
            raise CommentNotFound(str(comment_id))
        if not _may_change(comment, editor_id):
            raise CommentChangeForbidden(str(comment_id))
        if comment.status != CommentStatus.PUBLISHED:
            raise CommentNotEditable(str(comment_id))
        if comment.version != expected_version:
            raise VersionMismatch(comment.version)
        edit = local_edit(
            comment_id=str(comment.id), replica=settings.CHORUS_REGION, merged_vector=comment.vector, body=body
        )
        updated = Comment.objects.filter(id=comment.id, version=expected_version).update(
            body=body,
            version=F("version") + 1,
            vector=edit.vector,
            edit_id=edit.edit_id,
            edit_rank=edit.rank,
            edit_vector=edit.vector,
            updated_at=timezone.now(),
        )
        if updated != 1:
            raise VersionMismatch(Comment.objects.values_list("version", flat=True).get(id=comment.id))
        _keep_current_body(comment)
        comment.refresh_from_db()
        _edited_event(comment, edit.edit_id)
    return comment


def comment_edit_outgoing(*, comment: Comment) -> ReplicatedEdit:
    """The comment's current edit as it is shipped to the other regions."""
    return ReplicatedEdit(
        comment_id=str(comment.id),
        replica=comment.edit_id.rpartition(":")[0],
        vector=comment.edit_vector,
        body=comment.body,
    )


def comment_replicated_edit_apply(*, edit: ReplicatedEdit) -> bool:
    """Apply an edit made in another region; idempotent and order-independent.

    Merges the version vectors; the body becomes the edit's if its ``(rank, replica)`` is greater
    than the current edit's (the rule in ``comments.replication``), and whichever body loses is
    kept as a revision. Returns whether the body changed. A repeated delivery changes nothing.
    Raises ``Comment.DoesNotExist`` if the comment has not reached this region yet (retry later).
    """
    with transaction.atomic():
        comment = (
            Comment.objects.select_for_update(of=("self",)).select_related("author", "stream").get(id=edit.comment_id)
        )
        seen = edit.edit_id == comment.edit_id or comment.revisions.filter(edit_id=edit.edit_id).exists()
        if seen:
            return False
        merged = vector_merge(comment.vector, edit.vector)
        if edit.key > edit_key(edit_id=comment.edit_id, rank=comment.edit_rank):
            _keep_current_body(comment)
            Comment.objects.filter(id=comment.id).update(
                body=edit.body,
                version=F("version") + 1,
                vector=merged,
                edit_id=edit.edit_id,
                edit_rank=edit.rank,
                edit_vector=dict(edit.vector),
                updated_at=timezone.now(),
            )
            comment.refresh_from_db()
            if comment.status == CommentStatus.PUBLISHED:
                _edited_event(comment, edit.edit_id)
            return True
        CommentRevision.objects.create(comment=comment, edit_id=edit.edit_id, body=edit.body, vector=dict(edit.vector))
        Comment.objects.filter(id=comment.id).update(vector=merged)
        return False


def comment_delete(*, comment_id: uuid.UUID, actor_id: int | None = None) -> bool:
    """Delete a comment; idempotent, so a saga may use it as a compensation.

    Returns whether this call deleted it. A comment that is missing or already deleted is a
    no-op; one still pending is marked deleted and never published (no event); a published one
    appends ``comment.deleted``. ``actor_id`` (``None`` for the system) must be the author or
    staff, else ``CommentChangeForbidden``. Locks the comment row, so it cannot race the publish task.
    """
    with transaction.atomic():
        comment = (
            Comment.objects.select_for_update(of=("self",))
            .select_related("author", "stream")
            .filter(id=comment_id)
            .first()
        )
        if comment is None or comment.status == CommentStatus.DELETED:
            return False
        if actor_id is not None and not _may_change(comment, actor_id):
            raise CommentChangeForbidden(str(comment_id))
        was_published = comment.status == CommentStatus.PUBLISHED
        Comment.objects.filter(id=comment.id).update(
            status=CommentStatus.DELETED, version=F("version") + 1, updated_at=timezone.now()
        )
        if was_published:
            comment.refresh_from_db(fields=["status", "version"])
            stream_event_append(
                stream_id=comment.stream_id,
                event_type=COMMENT_DELETED,
                event_id=comment_event_id(comment.id, COMMENT_DELETED),
                payload=comment_as_dict(comment),
            )
    return True
