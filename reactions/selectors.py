"""Reads of reactions on comments."""

import uuid

from django.db.models import Count, Subquery

from comments.models import Comment, CommentStatus
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


def stream_latest_comment_reactions(*, stream_id: int, user_id: int | None, limit: int) -> dict[str, dict]:
    """Reactions on the stream's latest ``limit`` published comments, for a page to start from:
    ``{comment id: {"counts": {kind: n}, "mine": [kinds]}}`` in two queries. Later changes arrive
    as ``reaction.added`` / ``reaction.removed`` events, which carry absolute counts."""
    latest = (
        Comment.objects.filter(stream_id=stream_id, status=CommentStatus.PUBLISHED)
        .order_by("-seq")
        .values("id")[:limit]
    )
    live = CommentReaction.objects.filter(comment_id__in=Subquery(latest), removed_at__isnull=True)
    found: dict[str, dict] = {}
    for row in live.values("comment_id", "kind").annotate(n=Count("tag")).order_by():
        entry = found.setdefault(str(row["comment_id"]), {"counts": {}, "mine": []})
        entry["counts"][row["kind"]] = row["n"]
    if user_id is not None:
        for comment_id, kind in live.filter(user_id=user_id).values_list("comment_id", "kind").distinct():
            found.setdefault(str(comment_id), {"counts": {}, "mine": []})["mine"].append(kind)
    return found
