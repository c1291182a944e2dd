"""Small helpers for driving the public API over real HTTP."""

from collections.abc import Iterable

import httpx
from django.db.models import QuerySet

from comments.models import Comment, CommentStatus
from tests.support.processes import wait_until


def post_comment(
    client: httpx.Client, base: str, slug: str, headers: dict[str, str], body: str, key: str | None = None
) -> httpx.Response:
    extra = {"Idempotency-Key": key} if key else {}
    return client.post(f"{base}/api/v1/streams/{slug}/comments", json={"body": body}, headers={**headers, **extra})


def comment_seqs(comments: QuerySet[Comment]) -> list[int]:
    """The sequence numbers of ``comments``, sorted; every one must have one (be published)."""
    seqs = list(comments.values_list("seq", flat=True))
    assert None not in seqs, "a comment without a sequence number"
    return sorted(seq for seq in seqs if seq is not None)


def wait_published(comment_ids: Iterable[str], *, timeout: float = 60) -> None:
    ids = set(comment_ids)

    def all_published() -> bool:
        published = Comment.objects.filter(id__in=ids, status=CommentStatus.PUBLISHED).count()
        return published == len(ids)

    wait_until(all_published, timeout=timeout, interval=0.1, what=f"{len(ids)} comments to be published")
