"""project.bulk_sql writes rows exactly as the ORM's bulk_create and update would, on real PostgreSQL."""

import uuid

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from comments.models import Comment, CommentStatus
from project import bulk_sql
from realtime.models import Stream, StreamEvent
from tests.factories import StreamFactory, UserFactory

pytestmark = [pytest.mark.django_db, pytest.mark.services]


def _comment(stream: Stream, author: User, key: str, body: str = "hello") -> Comment:
    return Comment(stream=stream, author=author, body=body, idempotency_key=key, request_fingerprint="f")


def test_inserted_rows_read_back_as_the_orm_writes_them() -> None:
    """Defaults, auto_now values, JSON, nulls and an auto-increment key are filled as bulk_create fills them."""
    stream, author = StreamFactory.create(), UserFactory.create()
    before = timezone.now()
    rows = [_comment(stream, author, f"k{i}", body=f'it\'s "quoted" \\ and ünïcode {i}') for i in range(3)]

    inserted = bulk_sql.rows_insert(rows)

    assert inserted == {row.id for row in rows}
    for row in rows:
        stored = Comment.objects.get(id=row.id)
        assert stored.body == row.body
        assert stored.status == CommentStatus.PENDING and stored.version == 1 and stored.seq is None
        assert stored.vector == {} and stored.edit_id == "" and stored.publish_isolated is False
        assert before <= stored.created_at <= stored.updated_at <= timezone.now()
    event = StreamEvent(stream=stream, seq=1, event_id=uuid.uuid4(), type="t", payload={"a": [1, "x", None]})
    bulk_sql.rows_insert([event])
    assert StreamEvent.objects.get(id=event.id).payload == {"a": [1, "x", None]}  # its serial id set


def test_conflicting_rows_are_skipped_and_not_reported() -> None:
    stream, author = StreamFactory.create(), UserFactory.create()
    first = _comment(stream, author, "same")
    bulk_sql.rows_insert([first])

    again, fresh = _comment(stream, author, "same", body="other"), _comment(stream, author, "new")
    assert bulk_sql.rows_insert([again, fresh], ignore_conflicts=True) == {fresh.id}
    assert Comment.objects.get(author=author, idempotency_key="same").body == "hello"


def test_rows_update_sets_each_rows_values_and_the_common_ones() -> None:
    stream, author = StreamFactory.create(), UserFactory.create()
    rows = [_comment(stream, author, f"k{i}") for i in range(3)]
    bulk_sql.rows_insert(rows)
    now = timezone.now()

    changed = bulk_sql.rows_update(
        Comment,
        key="id",
        rows=[{"id": rows[0].id, "seq": 7}, {"id": rows[2].id, "seq": 9}],
        common={"status": CommentStatus.PUBLISHED.value, "published_at": now},
    )

    assert changed == 2
    stored = {c.id: c for c in Comment.objects.all()}
    assert (stored[rows[0].id].seq, stored[rows[2].id].seq, stored[rows[1].id].seq) == (7, 9, None)
    assert stored[rows[0].id].status == CommentStatus.PUBLISHED and stored[rows[0].id].published_at == now
    assert stored[rows[1].id].status == CommentStatus.PENDING
