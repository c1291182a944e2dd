"""Reads of comments."""

import uuid

from django.db.models import QuerySet

from comments.models import Comment, CommentStatus
from comments.replication import revision_reason


def comment_get(*, comment_id: uuid.UUID) -> Comment | None:
    return Comment.objects.select_related("author", "stream").filter(id=comment_id).first()


def comment_page(*, stream_id: int, after: int, limit: int) -> list[Comment]:
    """Published comments with ``seq > after``, in sequence order; at most ``limit``."""
    comments: QuerySet[Comment] = (
        Comment.objects.select_related("author", "stream")
        .filter(stream_id=stream_id, status=CommentStatus.PUBLISHED, seq__gt=after)
        .order_by("seq")
    )
    return list(comments[:limit])


def comment_history(*, comment: Comment) -> list[tuple[str, str, str]]:
    """``(edit_id, body, reason)`` of every body the comment no longer shows, by edit id."""
    return [
        (edit_id, body, revision_reason(revision_vector=vector, current_vector=comment.edit_vector))
        for edit_id, body, vector in comment.revisions.order_by("edit_id").values_list("edit_id", "body", "vector")
    ]
