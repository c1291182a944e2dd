"""Reads of comments."""

import uuid
from dataclasses import dataclass

from django.db import connection, connections, router, transaction
from django.db.models import Count, Min, Q, QuerySet
from django.utils import timezone

from comments.models import Comment, CommentStatus
from comments.replication import revision_reason
from realtime.models import Stream


def comment_get(*, comment_id: uuid.UUID) -> Comment | None:
    return Comment.objects.select_related("author", "stream").filter(id=comment_id).first()


def comment_id_by_idempotency_key(*, author_id: int, idempotency_key: str) -> uuid.UUID | None:
    """The comment an author's request with this key made, if it made one."""
    return (
        Comment.objects.filter(author_id=author_id, idempotency_key=idempotency_key)
        .values_list("id", flat=True)
        .first()
    )


def comment_page(*, stream_id: int, after: int, limit: int) -> list[Comment]:
    """Published comments with ``seq > after``, in sequence order; at most ``limit``."""
    comments: QuerySet[Comment] = (
        Comment.objects.select_related("author", "stream")
        .filter(stream_id=stream_id, status=CommentStatus.PUBLISHED, seq__gt=after)
        .order_by("seq")
    )
    return list(comments[:limit])


def comment_tail(*, stream_id: int, count: int) -> tuple[list[Comment], int, int]:
    """The latest ``count`` published comments (oldest first) and the position ``(epoch, head)``
    they are current at.

    Both are read in one snapshot (a REPEATABLE READ transaction on PostgreSQL): the comments are
    exactly those published at or before the head, in their state at that head, so a subscriber
    that resumes with ``after=head`` misses nothing and sees nothing twice. Inside a caller's
    transaction the caller's snapshot applies.
    """
    using = router.db_for_read(Comment)
    connection = connections[using]
    if connection.in_atomic_block or connection.vendor != "postgresql":
        return _comment_tail_read(using=using, stream_id=stream_id, count=count)
    with transaction.atomic(using=using):
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        return _comment_tail_read(using=using, stream_id=stream_id, count=count)


def _comment_tail_read(*, using: str, stream_id: int, count: int) -> tuple[list[Comment], int, int]:
    epoch, head = Stream.objects.using(using).filter(id=stream_id).values_list("epoch", "last_seq").first() or (1, 0)
    comments: QuerySet[Comment] = (
        Comment.objects.using(using)
        .select_related("author", "stream")
        .filter(stream_id=stream_id, status=CommentStatus.PUBLISHED, seq__lte=head)
        .order_by("-seq")
    )
    latest = list(comments[:count]) if count else []
    latest.reverse()
    return latest, epoch, head


def comment_history(*, comment: Comment) -> list[tuple[str, str, str]]:
    """``(edit_id, body, reason)`` of every body the comment no longer shows, by edit id."""
    return [
        (edit_id, body, revision_reason(revision_vector=vector, current_vector=comment.edit_vector))
        for edit_id, body, vector in comment.revisions.order_by("edit_id").values_list("edit_id", "body", "vector")
    ]


@dataclass(frozen=True)
class PendingStream:
    """Comments of one stream accepted and not yet published (set-aside ones counted apart)."""

    stream_id: int
    slug: str
    pending: int
    isolated: int
    oldest_age_seconds: float


@dataclass(frozen=True)
class PublishLatency:
    p50: float  # seconds from accepting a comment to publishing it
    p99: float
    count: int  # comments published in the window


def comments_publish_latency(*, window_seconds: int = 60) -> PublishLatency:
    """Median and 99th percentile of accept-to-publish time over the last ``window_seconds``.

    PostgreSQL only (``percentile_cont``): elsewhere it raises ``DatabaseError``.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at - created_at)),"
            f" count(*) FROM {Comment._meta.db_table} WHERE published_at > now() - make_interval(secs => %s)",
            [window_seconds],
        )
        p50, p99, count = cursor.fetchone()
    return PublishLatency(p50=float(p50 or 0), p99=float(p99 or 0), count=int(count))


def comments_pending_oldest_age() -> float:
    """Seconds the oldest comment waiting for its stream's sequencer has waited (0 if none): the
    publish lag. Comments set aside from the batches wait on their own task and are not counted."""
    oldest = Comment.objects.filter(status=CommentStatus.PENDING, publish_isolated=False).aggregate(
        oldest=Min("created_at")
    )["oldest"]
    return 0.0 if oldest is None else max(0.0, (timezone.now() - oldest).total_seconds())


def comments_pending_by_stream() -> list[PendingStream]:
    """Every stream with comments not yet published, the longest-waiting first."""
    now = timezone.now()
    rows = (
        Comment.objects.filter(status=CommentStatus.PENDING)
        .values("stream_id", "stream__slug")
        .annotate(
            pending=Count("id", filter=Q(publish_isolated=False)),
            isolated=Count("id", filter=Q(publish_isolated=True)),
            oldest=Min("created_at"),
        )
        .order_by("oldest")
    )
    return [
        PendingStream(
            stream_id=row["stream_id"],
            slug=row["stream__slug"],
            pending=row["pending"],
            isolated=row["isolated"],
            oldest_age_seconds=max(0.0, (now - row["oldest"]).total_seconds()),
        )
        for row in rows
    ]
