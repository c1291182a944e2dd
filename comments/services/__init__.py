"""Writes of comments: acceptance (``accept``), the per-stream sequencer (``publish``), edits and
deletes (``edits``). Callers import from here."""

from comments.services.accept import IdempotencyKeyReused, InvalidParent, StreamClosed, comment_accept
from comments.services.edits import (
    COMMENT_DELETED,
    COMMENT_EDITED,
    CommentChangeForbidden,
    CommentNotEditable,
    CommentNotFound,
    VersionMismatch,
    comment_delete,
    comment_edit,
    comment_edit_outgoing,
    comment_replicated_edit_apply,
)
from comments.services.publish import (
    COMMENT_CREATED,
    PUBLISH_TASK,
    STREAM_PUBLISH_TASK,
    comment_event_id,
    comment_publish,
    comments_pending_redrive,
    comments_publish_batch,
    comments_publish_nudge,
    comments_publish_pending,
)

__all__ = [
    "COMMENT_CREATED",
    "COMMENT_DELETED",
    "COMMENT_EDITED",
    "PUBLISH_TASK",
    "STREAM_PUBLISH_TASK",
    "CommentChangeForbidden",
    "CommentNotEditable",
    "CommentNotFound",
    "IdempotencyKeyReused",
    "InvalidParent",
    "StreamClosed",
    "VersionMismatch",
    "comment_accept",
    "comment_delete",
    "comment_edit",
    "comment_edit_outgoing",
    "comment_event_id",
    "comment_publish",
    "comment_replicated_edit_apply",
    "comments_pending_redrive",
    "comments_publish_batch",
    "comments_publish_nudge",
    "comments_publish_pending",
]
