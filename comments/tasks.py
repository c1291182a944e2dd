"""Celery tasks of the comments app: thin wrappers; retries and dead-lettering come from the base."""

import logging
import uuid

from celery import shared_task

from comments.models import Comment
from comments.services import comment_publish
from delivery.reliable import PermanentError, ReliableTask

logger = logging.getLogger(__name__)


@shared_task(base=ReliableTask)
def comment_publish_task(comment_id: str) -> None:
    """Publish one accepted comment; safe to run any number of times."""
    try:
        parsed = uuid.UUID(comment_id)
    except (TypeError, ValueError):
        raise PermanentError(f"not a comment id: {comment_id!r}") from None
    try:
        comment_publish(comment_id=parsed)
    except Comment.DoesNotExist:
        # Deleted (or its stream was) before it was published: nothing left to do, never retry.
        logger.info("comment %s no longer exists; nothing to publish", comment_id)
