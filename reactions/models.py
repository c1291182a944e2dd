"""Reactions: merged tap counters (one row per stream, kind and replica) and reactions on comments."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from comments.models import Comment
from realtime.models import Stream


class TapCounter(models.Model):
    """The PostgreSQL copy of one replica's entry in a stream's tap PN-counter (per kind).

    Taps are counted in Redis; the flush writes each replica's count here with
    ``count = GREATEST(count, new)``, the CRDT merge, so a replayed or concurrent flush can only
    confirm a value, never add to it. The total of a kind is the sum over replicas.
    """

    stream = models.ForeignKey(Stream, on_delete=models.CASCADE, related_name="tap_counters")
    kind = models.CharField(max_length=32)
    replica = models.CharField(max_length=200)
    count = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stream", "kind", "replica"], name="tap_counter_replica_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.stream_id}:{self.kind}@{self.replica}={self.count}"


class CommentReaction(models.Model):
    """One add of an observed-remove set: a user's reaction ``kind`` on a comment.

    ``tag`` identifies the add; a remove tombstones it (``removed_at``) instead of deleting the
    row, so the set can be merged with another copy (``reactions.crdt.ORSet``) and a replayed
    remove is recognised. At most one live (untombstoned) add per (comment, user, kind).
    """

    tag = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    comment = models.ForeignKey(Comment, on_delete=models.CASCADE, related_name="reactions")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comment_reactions")
    kind = models.CharField(max_length=32)
    created_at = models.DateTimeField(auto_now_add=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comment", "user", "kind"],
                condition=Q(removed_at__isnull=True),
                name="comment_reaction_live_unique",
            ),
        ]
        indexes = [models.Index(fields=["comment", "kind"], name="comment_reaction_kind_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.kind} on {self.comment_id}"
