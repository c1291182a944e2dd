"""A user's reactions on a comment: at most one per kind, idempotent add and remove.

Each user's reactions on a comment are an observed-remove set (``reactions.crdt.ORSet``) kept in
``CommentReaction`` rows: an add inserts a row with a fresh tag, a remove tombstones the live
tag. Both are idempotent and safe as saga steps and compensations: adding twice keeps one
reaction, removing a reaction that is already gone (or never existed, or whose comment is gone)
is a no-op. A change appends ``reaction.added`` / ``reaction.removed`` to the stream's event log
(the event id is derived from the tag, so one change can only be logged once); no-ops emit nothing.

Event payload: ``{"comment": id, "kind": k, "user": username, "count": live reactions of k}``.
"""

import uuid
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import Field
from django.utils import timezone

from comments.models import Comment, CommentStatus
from reactions.models import CommentReaction
from reactions.services.taps import reaction_kind_check
from realtime.services import stream_event_append

REACTION_ADDED = "reaction.added"
REACTION_REMOVED = "reaction.removed"


class CommentNotReactable(Exception):
    """The comment does not exist or is not published (pending or deleted)."""


@dataclass(frozen=True)
class CommentReactionResult:
    changed: bool  # False when the call found the reaction already in the wanted state
    count: int  # live reactions of this kind on the comment afterwards


def _db_value(field: str, value: object) -> Any:
    """``value`` as the database stores ``CommentReaction.<field>``: raw SQL skips the ORM's
    conversion, and SQLite (the embedded fallback) keeps UUIDs and datetimes as text."""
    model_field = CommentReaction._meta.get_field(field)
    assert isinstance(model_field, Field)  # a column of the model, not a reverse relation
    return model_field.get_db_prep_value(value, connection)


def _tag(raw: object) -> uuid.UUID:
    return CommentReaction._meta.get_field("tag").to_python(raw)


def _live_count(comment_id: uuid.UUID, kind: str) -> int:
    return CommentReaction.objects.filter(comment_id=comment_id, kind=kind, removed_at__isnull=True).count()


def _append(*, comment: Comment, user_id: int, kind: str, tag: uuid.UUID, event_type: str) -> int:
    """Append the change's event; returns the count it carries.

    The count is read by the payload factory, that is after the stream's row lock is taken. Every
    change of a reaction appends its event under that lock before it commits, so the count sees
    exactly the changes with a lower ``seq`` (a new statement under READ COMMITTED sees what
    committed while it waited): concurrent adds say 1, 2, 3... in sequence order.
    """
    username = get_user_model().objects.get(pk=user_id).get_username()

    def payload(_seq: int) -> dict[str, object]:
        return {"comment": str(comment.id), "kind": kind, "user": username, "count": _live_count(comment.id, kind)}

    event = stream_event_append(
        stream_id=comment.stream_id,
        event_type=event_type,
        event_id=uuid.uuid5(tag, event_type),
        payload_factory=payload,
    )
    return int(event.payload["count"])


def comment_reaction_add(*, comment_id: uuid.UUID, user_id: int, kind: str) -> CommentReactionResult:
    """Put the user's ``kind`` reaction on a published comment; idempotent.

    Raises ``UnknownKind`` or ``CommentNotReactable``. Emits ``reaction.added`` only when it adds.
    Concurrent adds are decided by the partial unique index: exactly one inserts.
    """
    reaction_kind_check(kind)
    with transaction.atomic():
        comment = Comment.objects.filter(id=comment_id, status=CommentStatus.PUBLISHED).first()
        if comment is None:
            raise CommentNotReactable(f"no published comment {comment_id}")
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO reactions_commentreaction (tag, comment_id, user_id, kind, created_at, removed_at)
                VALUES (%s, %s, %s, %s, %s, NULL)
                ON CONFLICT (comment_id, user_id, kind) WHERE removed_at IS NULL DO NOTHING
                RETURNING tag
                """,
                [
                    _db_value("tag", uuid.uuid4()),
                    _db_value("comment", comment_id),
                    user_id,
                    kind,
                    _db_value("created_at", timezone.now()),
                ],
            )
            row = cursor.fetchone()
        if row is None:
            return CommentReactionResult(changed=False, count=_live_count(comment_id, kind))
        count = _append(comment=comment, user_id=user_id, kind=kind, tag=_tag(row[0]), event_type=REACTION_ADDED)
        return CommentReactionResult(changed=True, count=count)


def comment_reaction_remove(*, comment_id: uuid.UUID, user_id: int, kind: str) -> CommentReactionResult:
    """Take the user's ``kind`` reaction off a comment; idempotent, never raises for "not there".

    Raises only ``UnknownKind``. Emits ``reaction.removed`` only when it removes.
    """
    reaction_kind_check(kind)
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                """
                UPDATE reactions_commentreaction SET removed_at = %s
                 WHERE comment_id = %s AND user_id = %s AND kind = %s AND removed_at IS NULL
                RETURNING tag
                """,
                [_db_value("removed_at", timezone.now()), _db_value("comment", comment_id), user_id, kind],
            )
            row = cursor.fetchone()
        if row is None:
            return CommentReactionResult(changed=False, count=_live_count(comment_id, kind))
        comment = Comment.objects.get(id=comment_id)
        count = _append(comment=comment, user_id=user_id, kind=kind, tag=_tag(row[0]), event_type=REACTION_REMOVED)
        return CommentReactionResult(changed=True, count=count)
