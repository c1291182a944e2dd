"""Celery tasks of the comments app: thin wrappers; retries and dead-lettering come from the base."""

import logging
import uuid
from typing import Any

from celery import shared_task
from django.conf import settings

from comments.models import Comment
from comments.services import comment_publish, comments_pending_redrive, comments_publish_pending
from delivery.reliable import PermanentError, ReliableTask

logger = logging.getLogger(__name__)


class StreamPublishTask(ReliableTask):
    abstract = True

    def on_final_failure(self, exc: BaseException, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        # Nothing to dead-letter: the comments are still pending in PostgreSQL and the re-drive
        # sweep queues the stream again once whatever failed (the database) is back.
        logger.error("publishing stream %s failed for now (%r); the re-drive sweep will retry", kwargs, exc)
        return True


@shared_task(base=StreamPublishTask)
def stream_comments_publish_task(stream_id: int) -> None:
    """Publish what is pending on one stream; at most one is queued or running per stream."""
    comments_publish_pending(stream_id=int(stream_id))


@shared_task(base=ReliableTask)
def comment_publish_task(comment_id: str) -> None:
    """Publish one comment set aside from its stream's batches; safe to run any number of times."""
    try:
        parsed = uuid.UUID(comment_id)
    except (TypeError, ValueError):
        raise PermanentError(f"not a comment id: {comment_id!r}") from None
    try:
        comment_publish(comment_id=parsed)
    except Comment.DoesNotExist:
        # Deleted (or its stream was) before it was published: nothing left to do, never retry.
        logger.info("comment %s no longer exists; nothing to publish", comment_id)


@shared_task(ignore_result=True)
def comments_pending_redrive_task() -> int:
    """Re-drive streams whose comments wait longer than they should (their task was lost)."""
    return len(comments_pending_redrive(older_than_seconds=settings.CHORUS_PUBLISH_REDRIVE_SECONDS))
