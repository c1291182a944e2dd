"""Reads of comments."""

import uuid

from django.db.models import QuerySet

from comments.models import Comment, CommentStatus


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
