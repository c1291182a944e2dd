"""Comments: accepted as ``pending`` by the API, then published (sequenced) by a Celery task."""

import uuid

from django.conf import settings
from django.db import models

from realtime.models import Stream


class CommentStatus(models.TextChoices):
    PENDING = "pending"
    PUBLISHED = "published"
    DELETED = "deleted"


class Comment(models.Model):
    """A comment on a stream.

    ``(author, idempotency_key)`` is unique: a retried request finds the comment its first attempt
    made instead of making a second. ``request_fingerprint`` tells a retry (same request) from a
    key reused for a different request.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comments")
    body = models.TextField()
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replies")
    seq = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=16, choices=CommentStatus.choices, default=CommentStatus.PENDING)
    version = models.PositiveIntegerField(default=1)
    idempotency_key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    published_at = models.DateTimeField(null=True, blank=True)
    # A pending comment whose publication failed on its own: left out of its stream's batches and
    # published by its own retrying task (then dead-lettered), so it never blocks the stream.
    publish_isolated = models.BooleanField(default=False)
    # Replicated edits (see comments/replication.py): the merged version vector of every edit
    # applied here, and the id and rank of the edit whose body is current.
    vector = models.JSONField(default=dict, blank=True)
    edit_id = models.CharField(max_length=100, blank=True, default="")
    edit_rank = models.BigIntegerField(default=0)
    edit_vector = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["author", "idempotency_key"], name="comment_author_idempotency_key_unique"),
            models.UniqueConstraint(fields=["stream", "seq"], name="comment_stream_seq_unique"),
        ]
        indexes = [
            models.Index(fields=["status", "created_at"], name="comment_status_created_idx"),
            # The sequencer's work list: small (pending comments only), read per stream in accept order.
            models.Index(
                fields=["stream", "created_at"],
                name="comment_pending_idx",
                condition=models.Q(status="pending"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} ({self.status})"


class CommentRevision(models.Model):
    """A body a comment no longer shows: replaced by a later edit, or the loser of a conflict.

    ``edit_id`` (``<replica>:<counter>``, ``original`` for the first body) is unique per comment,
    so a replicated edit delivered twice is recorded once. Whether it was superseded or lost a
    conflict is derived from ``vector`` and the current edit's (``comments.selectors``), so every
    region reports the same history once it has the same edits.
    """

    comment = models.ForeignKey(Comment, on_delete=models.CASCADE, related_name="revisions")
    edit_id = models.CharField(max_length=100)
    body = models.TextField()
    vector = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["comment", "edit_id"], name="comment_revision_edit_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.comment_id} {self.edit_id}"
