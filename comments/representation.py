"""The one JSON shape of a comment, shared by the REST API and the ``comment.*`` events."""

from typing import Any

from comments.models import Comment


def comment_as_dict(comment: Comment) -> dict[str, Any]:
    """Plain JSON-ready dict; load author and stream with ``select_related``."""
    return {
        "id": str(comment.id),
        "stream": comment.stream.slug,
        "seq": comment.seq,
        "author": comment.author.get_username(),
        "body": "" if comment.status == "deleted" else comment.body,
        "parent": str(comment.parent_id) if comment.parent_id else None,
        "status": comment.status,
        "version": comment.version,
        "created_at": comment.created_at.isoformat().replace("+00:00", "Z"),
    }
