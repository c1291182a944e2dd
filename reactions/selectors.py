"""Reads of reactions on comments."""

import uuid

from django.db.models import Count

from reactions.crdt import ORSet
from reactions.models import CommentReaction


def comment_reaction_counts(*, comment_id: uuid.UUID) -> dict[str, int]:
    rows = (
        CommentReaction.objects.filter(comment_id=comment_id, removed_at__isnull=True)
        .values("kind")
        .annotate(n=Count("tag"))
        .order_by("kind")
    )
    return {row["kind"]: row["n"] for row in rows}


def comment_reaction_set(*, comment_id: uuid.UUID, user_id: int) -> ORSet:
    """The user's reactions on the comment as the OR-set the rows store (``.elements`` = kinds)."""
    rows = CommentReaction.objects.filter(comment_id=comment_id, user_id=user_id).values_list(
        "kind", "tag", "removed_at"
    )
    return ORSet.of(
        adds=[(kind, str(tag)) for kind, tag, _ in rows],
        removed=[str(tag) for _, tag, removed_at in rows if removed_at is not None],
    )
