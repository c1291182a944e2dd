"""Edits and deletes of comments, and edits replicated from other regions."""

import uuid

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from comments.models import Comment, CommentRevision, CommentStatus
from comments.replication import ReplicatedEdit, edit_key, local_edit, vector_merge
from comments.representation import comment_as_dict
from comments.services.publish import comment_event_id
from realtime.services import stream_event_append, stream_events_redact

COMMENT_EDITED = "comment.edited"
COMMENT_DELETED = "comment.deleted"


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
    """Take the replaced body out of the log, then append ``comment.edited`` with the new one."""
    _redact(comment)
    stream_event_append(
        stream_id=comment.stream_id,
        event_type=COMMENT_EDITED,
        event_id=uuid.uuid5(comment.id, f"{COMMENT_EDITED}:{edit_id}"),
        payload=comment_as_dict(comment),
        subject=comment.id,
    )


def _redact(comment: Comment) -> None:
    """Every earlier event of the comment now carries the body it shows ("" once deleted), so no
    reader of the log (replay, resync, gap repair) gets a deleted or replaced body again. Earlier
    bodies stay only in ``CommentRevision`` (``comment_history``, the admin): the moderator view.
    The caller holds the comment's row lock, so concurrent edits redact in commit order."""
    stream_events_redact(subject=comment.id, changes={"body": comment_as_dict(comment)["body"]})


def _keep_current_body(comment: Comment) -> None:
    CommentRevision.objects.create(
        comment=comment, edit_id=comment.edit_id or "original", body=comment.body, vector=comment.edit_vector
    )


def comment_edit(*, comment_id: uuid.UUID, editor_id: int, body: str, expected_version: int) -> Comment:
    """Replace a published comment's body if it is still at ``expected_version`` (If-Match).

    Takes the comment's row lock, like ``comment_replicated_edit_apply`` and ``comment_delete``,
    so the version vector it extends includes every merge committed before it. The decision stays
    a conditional ``UPDATE ... WHERE id = %s AND version = %s``: of two concurrent edits of the
    same version exactly one succeeds, the other gets ``VersionMismatch``.
    The edit gets this region's next version-vector entry (``comments.replication``), the old
    body is kept as a ``superseded`` revision (only there: the comment's earlier events in the log
    are rewritten to the new body), and ``comment.edited`` is appended after it.
    Raises ``CommentNotFound``, ``CommentChangeForbidden``, ``CommentNotEditable``, ``VersionMismatch``.
    """
    with transaction.atomic():
        # The row lock orders this edit after a replicated edit being applied: the vector read here
        # must include every merge committed before this edit's own update, or the update drops it.
        comment = (
            Comment.objects.select_for_update(of=("self",))
            .select_related("author", "stream")
            .filter(id=comment_id)
            .first()
        )
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
    appends ``comment.deleted``, and its earlier events in the log lose their body, so no replay
    or resync serves the deleted text once this returns. ``actor_id`` (``None`` for the system)
    must be the author or staff, else ``CommentChangeForbidden``. Locks the comment row, so it
    cannot race the publish task.
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
            _redact(comment)
            stream_event_append(
                stream_id=comment.stream_id,
                event_type=COMMENT_DELETED,
                event_id=comment_event_id(comment.id, COMMENT_DELETED),
                payload=comment_as_dict(comment),
                subject=comment.id,
            )
    return True
