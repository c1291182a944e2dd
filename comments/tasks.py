"""Celery tasks of the comments app: thin wrappers that own retry policy."""

import logging
import uuid

from celery import shared_task
from django.conf import settings
from django.db import DatabaseError

from comments.models import Comment
from comments.selectors import comment_ids_pending
from comments.services import comment_enqueue_publish, comment_publish

logger = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(DatabaseError,),
    retry_backoff=1,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
)
def comment_publish_task(comment_id: str) -> None:
    """Publish one accepted comment; safe to run any number of times."""
    try:
        comment_publish(comment_id=uuid.UUID(comment_id))
    except Comment.DoesNotExist:
        # Deleted (or its stream was) before it was published: nothing left to do, never retry.
        logger.info("comment %s no longer exists; nothing to publish", comment_id)


@shared_task(acks_late=True, ignore_result=True)
def comment_sweep_pending_task() -> int:
    """Re-enqueue comments that stayed pending too long (their first hand-off was lost)."""
    ids = comment_ids_pending(older_than_seconds=settings.CHORUS_PENDING_SWEEP_AGE_SECONDS, limit=500)
    for comment_id in ids:
        comment_enqueue_publish(comment_id=comment_id)
    if ids:
        logger.warning("re-enqueued %d pending comments", len(ids))
    return len(ids)
